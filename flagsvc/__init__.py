"""flagsvc: a feature-flag server that advances canary rollouts by itself."""

__version__ = "0.1.0"

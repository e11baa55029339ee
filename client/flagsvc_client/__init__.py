"""flagsvc-client: evaluate flagsvc rollouts locally and report their outcomes."""

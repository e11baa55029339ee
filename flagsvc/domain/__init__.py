"""The domain: flags, their states and transitions, the canary judge. No Flask, no Redis."""

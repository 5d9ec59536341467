"""regflow config-svc."""

"""regflow resolver-svc."""

"""regflow cache-svc."""

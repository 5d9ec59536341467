"""regflow pusher-svc."""

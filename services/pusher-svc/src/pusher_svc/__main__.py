"""``python -m pusher_svc``: run the pusher until SIGTERM."""

from __future__ import annotations

from pusher_svc.app import create_app
from pusher_svc.handler import SERVICE
from pusher_svc.settings import PusherSettings
from regflow.service import serve


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    serve(SERVICE, PusherSettings, create_app)


if __name__ == "__main__":
    main()

"""Run pusher-svc: ``python -m pusher_svc`` (configured by ``REGFLOW_*``)."""

from pusher_svc.app import create_app
from pusher_svc.settings import PusherSettings
from regflow.logging import configure_logging
from regflow.service import run_service


def main() -> None:
    """Start the service and serve until SIGTERM."""
    settings = PusherSettings()
    configure_logging(
        "pusher-svc", log_format=settings.log_format, level=settings.log_level
    )
    run_service(create_app(settings), settings)


if __name__ == "__main__":
    main()

"""``python -m config_svc``: serve the registries API until SIGTERM."""

from __future__ import annotations

from config_svc.app import SERVICE_NAME, create_app
from config_svc.settings import ConfigSettings
from regflow.logging import configure_logging
from regflow.service import run_service


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    settings = ConfigSettings()
    configure_logging(
        SERVICE_NAME, log_format=settings.log_format, level=settings.log_level
    )
    run_service(create_app(settings), settings)


if __name__ == "__main__":
    main()

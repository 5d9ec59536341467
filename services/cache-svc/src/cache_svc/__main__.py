"""``python -m cache_svc``: run cache-svc until SIGTERM."""

from __future__ import annotations

from cache_svc.app import create_app
from cache_svc.handler import SERVICE_NAME
from cache_svc.settings import CacheSettings
from regflow.logging import configure_logging
from regflow.service import run_service


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    settings = CacheSettings()
    configure_logging(
        SERVICE_NAME, log_format=settings.log_format, level=settings.log_level
    )
    run_service(create_app(settings), settings)


if __name__ == "__main__":
    main()

"""``python -m resolver_svc``: run the resolver until SIGTERM."""

from __future__ import annotations

from regflow.logging import configure_logging
from regflow.service import run_service
from resolver_svc.app import create_app
from resolver_svc.handler import SERVICE_NAME
from resolver_svc.settings import ResolverSettings


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    settings = ResolverSettings()
    configure_logging(
        SERVICE_NAME, log_format=settings.log_format, level=settings.log_level
    )
    run_service(create_app(settings), settings)


if __name__ == "__main__":
    main()

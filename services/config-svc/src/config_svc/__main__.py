"""``python -m config_svc``: serve the registries API until SIGTERM."""

from __future__ import annotations

from config_svc.app import SERVICE_NAME, create_app
from config_svc.settings import ConfigSettings
from regflow.service import serve


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    serve(SERVICE_NAME, ConfigSettings, create_app)


if __name__ == "__main__":
    main()

"""``python -m cache_svc``: run cache-svc until SIGTERM."""

from __future__ import annotations

from cache_svc.app import create_app
from cache_svc.handler import SERVICE_NAME
from cache_svc.settings import CacheSettings
from regflow.service import serve


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    serve(SERVICE_NAME, CacheSettings, create_app)


if __name__ == "__main__":
    main()

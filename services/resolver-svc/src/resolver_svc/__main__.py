"""``python -m resolver_svc``: run the resolver until SIGTERM."""

from __future__ import annotations

from regflow.service import serve
from resolver_svc.app import create_app
from resolver_svc.handler import SERVICE_NAME
from resolver_svc.settings import ResolverSettings


def main() -> None:
    """Read settings from the environment, configure logging, serve."""
    serve(SERVICE_NAME, ResolverSettings, create_app)


if __name__ == "__main__":
    main()

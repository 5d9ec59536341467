"""resolver-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from regflow.settings import CommonSettings


class ResolverSettings(CommonSettings):
    """What the resolver adds to the common settings."""

    # Distinct default port so all services can run on one host without set-up.
    http_port: int = Field(default=8082, ge=0, le=65535)
    registries_group_id: str = Field(
        default="regflow-resolver-registries", min_length=1
    )
    steps_group_id: str = Field(default="regflow-resolver-steps", min_length=1)
    # How long a step that names an unknown registry (or needs a default that is
    # not there) waits for a registry change still in flight before it fails.
    registry_grace_seconds: float = Field(default=5.0, ge=0, le=60)

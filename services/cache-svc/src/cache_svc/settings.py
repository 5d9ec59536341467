"""cache-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from regflow.settings import CommonSettings


class CacheSettings(CommonSettings):
    """What cache-svc adds to the common settings."""

    # Distinct default port so all services can run on one host without set-up.
    http_port: int = Field(default=8084, ge=0, le=65535)
    steps_group_id: str = Field(default="regflow-cache-steps", min_length=1)
    results_group_id: str = Field(default="regflow-cache-results", min_length=1)
    registries_group_id: str = Field(default="regflow-cache-registries", min_length=1)
    # Newest images kept per (account, repository, platform, branch).
    branch_index_size: int = Field(default=64, ge=1, le=10_000)
    # Image metadata is kept this long after the image's newest build or push.
    retention_days: int = Field(default=30, ge=1)

    @property
    def retention(self) -> timedelta:
        """``retention_days`` as a timedelta."""
        return timedelta(days=self.retention_days)

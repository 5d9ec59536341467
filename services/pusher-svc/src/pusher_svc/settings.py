"""pusher-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from regflow.oci import Credentials
from regflow.registries.settings import SecretKeysSettings
from regflow.settings import CommonSettings


class PusherSettings(SecretKeysSettings, CommonSettings):
    """What pusher-svc adds to the common settings."""

    http_port: int = Field(default=8083, ge=0, le=65535)
    # The internal registry builds land in, and its credentials if it wants
    # any: they are sent to that host only, whatever a push command names.
    source_registry: str | None = None
    source_username: str | None = None
    source_password: SecretStr | None = None
    # Blob checks and transfers in flight per destination registry.
    blob_concurrency: int = Field(default=4, ge=1, le=64)
    # Whole-push attempts when a registry keeps failing transiently (5xx, 429,
    # network). Each request is already retried by the client and each blob
    # restarted by the engine; this outer loop rides out longer outages, so it
    # is small and slow.
    push_attempts: int = Field(default=2, ge=1, le=10)
    push_retry_initial_seconds: float = Field(default=2.0, gt=0)
    # How long a finished push is remembered, so a redelivered command republishes
    # its result instead of pushing and counting again (seconds).
    result_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    @model_validator(mode="after")
    def _source_credentials_have_a_host(self) -> Self:
        if self.source_username and not self.source_registry:
            msg = (
                "REGFLOW_SOURCE_REGISTRY must name the internal registry host that "
                "REGFLOW_SOURCE_USERNAME/PASSWORD are for"
            )
            raise ValueError(msg)
        return self

    def source_credentials_for(self, host: str) -> Credentials | None:
        """Credentials for ``host`` if it is the internal registry, else None."""
        if (
            self.source_username
            and self.source_password is not None
            and self.source_registry is not None
            and host.lower() == self.source_registry.lower()
        ):
            return Credentials(
                username=self.source_username, password=self.source_password
            )
        return None

"""pusher-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from regflow.oci import Credentials
from regflow.settings import CommonSettings


class PusherSettings(CommonSettings):
    """What pusher-svc adds to the common settings."""

    http_port: int = Field(default=8083, ge=0, le=65535)
    # Decrypts registry credentials written by config-svc: the same key list.
    secret_keys: SecretStr = SecretStr("")
    # Credentials for the internal registry builds land in, if it wants any.
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

    def source_credentials(self) -> Credentials | None:
        """Credentials for the internal registry, when both parts are set."""
        if self.source_username and self.source_password is not None:
            return Credentials(
                username=self.source_username, password=self.source_password
            )
        return None

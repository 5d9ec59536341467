"""config-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from regflow.registries.settings import SecretKeysSettings
from regflow.settings import CommonSettings


class ConfigSettings(SecretKeysSettings, CommonSettings):
    """What config-svc adds to the common settings.

    ``secret_keys`` (``REGFLOW_SECRET_KEYS``) is required and validated by
    :class:`~regflow.registries.settings.SecretKeysSettings`; the local stack
    and the tests generate a key (``python -m regflow.registries`` prints one).
    """

    # Distinct default port so all services can run on one host without set-up.
    http_port: int = Field(default=8081, ge=0, le=65535)
    # How often the outbox relay looks for unpublished changes (seconds); a
    # change is normally published by the request that made it, this is the
    # safety net after a broker outage or a crash.
    outbox_interval_seconds: float = Field(default=3.0, gt=0)
    # How long a write request waits for its change to reach the broker before
    # answering anyway (seconds); the relay publishes it later.
    outbox_publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Timeout of one test-connection call to a registry (seconds).
    connection_test_timeout_seconds: float = Field(default=10.0, gt=0)

"""config-svc settings (``REGFLOW_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from regflow.registries import SecretBox, SecretKeyError
from regflow.settings import CommonSettings


class ConfigSettings(CommonSettings):
    """What config-svc adds to the common settings.

    ``secret_keys`` (``REGFLOW_SECRET_KEYS``) is required: comma-separated Fernet
    keys, the first encrypts, all decrypt. There is deliberately no unencrypted
    or built-in-key mode, so a deployment cannot store credentials in the clear
    by forgetting a setting; the local stack and the tests generate a key
    (``python -m regflow.registries`` prints one).
    """

    # A malformed key is still key material: keep it out of start-up errors.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # Distinct default port so all services can run on one host without set-up.
    http_port: int = Field(default=8081, ge=0, le=65535)
    secret_keys: SecretStr = Field(default=SecretStr(""), validate_default=True)
    # How often the outbox relay looks for unpublished changes (seconds); a
    # change is normally published by the request that made it, this is the
    # safety net after a broker outage or a crash.
    outbox_interval_seconds: float = Field(default=3.0, gt=0)
    # How long a write request waits for its change to reach the broker before
    # answering anyway (seconds); the relay publishes it later.
    outbox_publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Timeout of one test-connection call to a registry (seconds).
    connection_test_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("secret_keys")
    @classmethod
    def _usable_keys(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            msg = (
                "REGFLOW_SECRET_KEYS is required: comma-separated Fernet keys that "
                "encrypt stored registry credentials (generate one with "
                "`python -m regflow.registries`)"
            )
            raise ValueError(msg)
        try:
            SecretBox.from_setting(value)
        except SecretKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

"""``REGFLOW_SECRET_KEYS``: the setting of services that store or read credentials."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from regflow.registries.crypto import GENERATE_HINT, KEYS_VARIABLE, SecretBox
from regflow.registries.errors import SecretKeyError


class SecretKeysSettings(BaseModel):
    """Settings mixin: the required, validated ``secret_keys`` field.

    Combine it with the common settings, mixin first::

        class PusherSettings(SecretKeysSettings, CommonSettings): ...

    ``secret_keys`` (``REGFLOW_SECRET_KEYS``) is comma-separated Fernet keys; the
    first encrypts, all decrypt. A missing or malformed value fails validation
    of the settings (so the service stops before it serves) with a message that
    names the variable and the key's position and says how to generate a key,
    never the value: the mixin turns on ``hide_input_in_errors`` for the whole
    settings class. There is deliberately no unencrypted or built-in-key mode,
    so a deployment cannot store credentials in the clear by forgetting it.
    """

    # A malformed key is still key material: keep it out of start-up errors.
    # Only this key is set (a BaseModel, not a BaseSettings, so no settings
    # defaults come with it): merged with CommonSettings' config in either base
    # order, it leaves the env prefix alone. Typed as a settings config so the
    # two bases agree for type checkers.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    secret_keys: SecretStr = Field(
        default=SecretStr(""),
        validate_default=True,
        description="Comma-separated Fernet keys; the first encrypts, all decrypt",
    )

    @field_validator("secret_keys")
    @classmethod
    def _usable_keys(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            msg = (
                f"{KEYS_VARIABLE} is required: comma-separated Fernet keys that "
                f"encrypt stored registry credentials ({GENERATE_HINT})"
            )
            raise ValueError(msg)
        try:
            SecretBox.from_setting(value)
        except SecretKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

    def secret_box(self) -> SecretBox:
        """The :class:`SecretBox` of the configured keys (already validated)."""
        return SecretBox.from_setting(self.secret_keys)

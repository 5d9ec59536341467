"""SecretKeysSettings: the shared, validated REGFLOW_SECRET_KEYS setting."""

import pytest
from pydantic import ValidationError

from regflow.registries import SecretBox, SecretKeysSettings
from regflow.settings import CommonSettings

pytestmark = pytest.mark.unit


class MixinFirst(SecretKeysSettings, CommonSettings):
    """The documented order."""


class MixinLast(CommonSettings, SecretKeysSettings):
    """The other order, which must behave the same."""


SettingsClass = type[MixinFirst] | type[MixinLast]


@pytest.fixture(params=[MixinFirst, MixinLast], ids=["mixin-first", "mixin-last"])
def settings_class(request: pytest.FixtureRequest) -> SettingsClass:
    """A service's settings class built with the mixin."""
    cls: SettingsClass = request.param
    return cls


def test_keys_come_from_the_environment_and_build_a_box(
    settings_class: SettingsClass, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REGFLOW_SECRET_KEYS is read with the common prefix and gives a SecretBox."""
    key = SecretBox.generate_key()
    monkeypatch.setenv("REGFLOW_SECRET_KEYS", key)
    monkeypatch.setenv("REGFLOW_REDIS_PREFIX", "from-env")
    settings = settings_class()
    assert settings.redis_prefix == "from-env"
    box = settings.secret_box()
    assert SecretBox([key]).decrypt(box.encrypt(b"value")) == b"value"


def test_missing_keys_say_how_to_generate_one(
    settings_class: SettingsClass, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key at all fails validation, naming the variable and the command."""
    monkeypatch.delenv("REGFLOW_SECRET_KEYS", raising=False)
    with pytest.raises(ValidationError) as caught:
        settings_class()
    message = str(caught.value)
    assert "REGFLOW_SECRET_KEYS is required" in message
    assert "`python -m regflow.registries`" in message


@pytest.mark.parametrize("value", [" , ", "not-a-key-at-all"])
def test_malformed_keys_are_refused_without_being_printed(
    settings_class: SettingsClass,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    """A blank or malformed value is refused; the error never echoes it."""
    monkeypatch.setenv("REGFLOW_SECRET_KEYS", value)
    with pytest.raises(ValidationError) as caught:
        settings_class()
    message = str(caught.value)
    assert "REGFLOW_SECRET_KEYS" in message
    assert "`python -m regflow.registries`" in message
    assert "not-a-key-at-all" not in message

"""REGFLOW_SECRET_KEYS and REGFLOW_INSECURE_REGISTRIES as config-svc reads them."""

import pytest
from pydantic import ValidationError

from config_svc.app import create_app
from config_svc.settings import ConfigSettings
from regflow.registries import SecretBox

pytestmark = pytest.mark.unit


def test_missing_secret_keys_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REGFLOW_SECRET_KEYS the settings do not load, and say how to fix it."""
    monkeypatch.delenv("REGFLOW_SECRET_KEYS", raising=False)
    with pytest.raises(ValidationError) as caught:
        ConfigSettings()
    assert "REGFLOW_SECRET_KEYS is required" in str(caught.value)
    assert "`python -m regflow.registries`" in str(caught.value)


def test_invalid_secret_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that is not a Fernet key is refused without being printed."""
    monkeypatch.setenv("REGFLOW_SECRET_KEYS", "this-is-not-a-key")
    with pytest.raises(ValidationError) as caught:
        ConfigSettings()
    assert "key 1 of REGFLOW_SECRET_KEYS is not a Fernet key" in str(caught.value)
    assert "this-is-not-a-key" not in str(caught.value)


def test_keys_from_the_environment_build_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two comma-separated keys (rotation) are read from the environment."""
    keys = f"{SecretBox.generate_key()},{SecretBox.generate_key()}"
    monkeypatch.setenv("REGFLOW_SECRET_KEYS", keys)
    settings = ConfigSettings()
    assert settings.secret_keys.get_secret_value() == keys
    assert keys not in repr(settings)
    assert create_app(settings).state.config_runtime.settings is settings


def test_invalid_secret_key_error_says_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A malformed key's error tells how to generate a good one."""
    monkeypatch.setenv("REGFLOW_SECRET_KEYS", f"{SecretBox.generate_key()},bad")
    with pytest.raises(ValidationError) as caught:
        ConfigSettings()
    assert "key 2 of REGFLOW_SECRET_KEYS" in str(caught.value)
    assert "`python -m regflow.registries`" in str(caught.value)


def test_connection_tester_matches_insecure_hosts_like_the_settings() -> None:
    """Test-connection speaks plain HTTP exactly where the shared setting says."""
    settings = ConfigSettings(
        secret_keys=SecretBox.generate_key(),
        insecure_registries="Local.Test, 10.0.0.1:5000",
    )
    tester = create_app(settings).state.config_runtime.tester
    assert tester.is_insecure("local.test:5000")
    assert tester.is_insecure("10.0.0.1:5000")
    assert not tester.is_insecure("10.0.0.1:5001")
    assert not tester.is_insecure("ghcr.io")

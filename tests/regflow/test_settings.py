"""CommonSettings: the insecure-registry list and how a host matches it."""

import pytest

from regflow.settings import CommonSettings

pytestmark = pytest.mark.unit


def _settings(insecure: str) -> CommonSettings:
    return CommonSettings(insecure_registries=insecure)


def test_entry_with_a_port_matches_that_port_only() -> None:
    """``host:port`` covers that port, not another one and not the bare host."""
    settings = _settings("10.0.0.1:5000")
    assert settings.is_insecure_registry("10.0.0.1:5000")
    assert not settings.is_insecure_registry("10.0.0.1:5001")
    assert not settings.is_insecure_registry("10.0.0.1")


def test_entry_without_a_port_matches_every_port() -> None:
    """A bare ``host`` covers the host with any port and without one."""
    settings = _settings("registry.local")
    assert settings.is_insecure_registry("registry.local")
    assert settings.is_insecure_registry("registry.local:5000")
    assert settings.is_insecure_registry("registry.local:443")
    assert not settings.is_insecure_registry("other.local:5000")
    assert not settings.is_insecure_registry("registry.local.example.com")


def test_matching_ignores_case_and_spacing() -> None:
    """Host names match regardless of case on either side; entries are trimmed."""
    settings = _settings(" Registry.Local , 10.0.0.1:5000 ,")
    assert settings.is_insecure_registry("REGISTRY.local:5000")
    assert settings.is_insecure_registry("registry.LOCAL")
    assert settings.is_insecure_registry("10.0.0.1:5000")


def test_ipv6_hosts_are_bracketed() -> None:
    """``[::1]`` covers every port of the address, ``[::1]:5000`` only that one."""
    assert _settings("[::1]").is_insecure_registry("[::1]:5000")
    assert _settings("[::1]").is_insecure_registry("[::1]")
    assert _settings("[::1]:5000").is_insecure_registry("[::1]:5000")
    assert not _settings("[::1]:5000").is_insecure_registry("[::1]:5001")
    assert not _settings("[::1]:5000").is_insecure_registry("[::1]")


def test_nothing_is_insecure_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the setting every registry is spoken to over HTTPS."""
    monkeypatch.delenv("REGFLOW_INSECURE_REGISTRIES", raising=False)
    settings = CommonSettings()
    assert not settings.is_insecure_registry("127.0.0.1:5000")
    assert not settings.is_insecure_registry("")

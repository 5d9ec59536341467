"""The registry-integration model: credentials pairing, validation, event view."""

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from regflow.events import Provider, RegistryView
from regflow.registries import (
    Credentials,
    RegistryIntegration,
    RegistryRuleViolation,
    credentials_from,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _integration(**overrides: object) -> RegistryIntegration:
    fields: dict[str, object] = {
        "account_id": "acme",
        "name": "prod",
        "provider": Provider.OTHER,
        "domain": "Registry.Example.com:5000",
        "repository_prefix": "team",
        "credentials": Credentials(username="bot", password=SecretStr("s3cret!")),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return RegistryIntegration(**fields)


def test_credentials_need_both_parts_or_none() -> None:
    """Half a login is refused on the missing field; none means anonymous."""
    assert credentials_from(None, None) is None
    pair = credentials_from("bot", "token")
    assert pair is not None
    assert pair.username == "bot"
    assert pair.password.get_secret_value() == "token"
    with pytest.raises(RegistryRuleViolation) as missing_password:
        credentials_from("bot", None)
    assert missing_password.value.field == "password"
    with pytest.raises(RegistryRuleViolation) as missing_username:
        credentials_from(None, SecretStr("token"))
    assert missing_username.value.field == "username"


def test_credentials_refuse_what_basic_auth_cannot_carry() -> None:
    """A ':' in the username or an empty password is refused, naming the field."""
    with pytest.raises(RegistryRuleViolation) as colon:
        credentials_from("a:b", "token")
    assert colon.value.field == "username"
    with pytest.raises(RegistryRuleViolation) as empty:
        credentials_from("bot", "")
    assert empty.value.field == "password"
    assert empty.value.message == "password must not be empty"
    with pytest.raises(RegistryRuleViolation) as long:
        credentials_from("bot", "x" * 16385)
    assert long.value.message == "password is longer than 16384 characters"


def test_secrets_stay_out_of_repr_and_dumps() -> None:
    """Printing or dumping an integration never shows the password."""
    integration = _integration()
    assert "s3cret!" not in repr(integration)
    assert "s3cret!" not in integration.model_dump_json()


def test_integration_normalises_fields() -> None:
    """The domain is lower-cased; an empty prefix is no prefix."""
    integration = _integration(repository_prefix="")
    assert integration.domain == "registry.example.com:5000"
    assert integration.repository_prefix is None


def test_integration_refuses_broken_rules() -> None:
    """Field rules fail validation; Docker Hub rules raise a rule violation."""
    with pytest.raises(ValidationError):
        _integration(domain="https://registry.example.com")
    with pytest.raises(RegistryRuleViolation) as caught:
        _integration(provider=Provider.DOCKERHUB, domain="ghcr.io")
    assert caught.value.field == "domain"
    with pytest.raises(RegistryRuleViolation) as caching:
        _integration(provider=Provider.DOCKERHUB, domain="docker.io", is_caching=True)
    assert caching.value.field == "provider"


def test_view_carries_no_credentials() -> None:
    """The event view has name, provider, domain and prefix only."""
    assert _integration().view() == RegistryView(
        name="prod",
        provider=Provider.OTHER,
        domain="registry.example.com:5000",
        repository_prefix="team",
    )

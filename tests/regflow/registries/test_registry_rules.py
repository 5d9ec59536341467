"""The field and provider rules of registry integrations."""

import pytest
from pydantic import TypeAdapter, ValidationError

from regflow.events import Provider
from regflow.registries import RegistryRuleViolation
from regflow.registries.rules import (
    RegistryName,
    check_provider_rules,
    is_docker_hub,
    normalize_domain,
    normalize_repository_prefix,
    resolve_domain,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ghcr.io", "ghcr.io"),
        ("Registry.Example.COM", "registry.example.com"),
        ("  quay.io ", "quay.io"),
        ("localhost:5000", "localhost:5000"),
        ("127.0.0.1:65535", "127.0.0.1:65535"),
        ("[::1]:5000", "[::1]:5000"),
        ("[fe80::1]", "[fe80::1]"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None),
    ],
)
def test_valid_domains_are_normalised(given: str, expected: str | None) -> None:
    """Hosts, ports and IP literals pass, in lower case and without blanks."""
    assert normalize_domain(given) == (expected or given)


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("https://ghcr.io", "without the scheme 'https://'"),
        ("http://localhost:5000", "REGFLOW_INSECURE_REGISTRIES"),
        ("us.gcr.io/my-project", "put 'my-project' in repository_prefix"),
        ("ghcr.io/", "without a path"),
        ("user@ghcr.io", "user info"),
        ("ghcr.io:0", "port '0'"),
        ("ghcr.io:99999", "port '99999'"),
        ("ghcr.io:http", "port 'http'"),
        ("::1", "brackets"),
        ("[::1", "unclosed"),
        ("[zz::1]", "not a valid IPv6"),
        ("300.1.1.1", "not a valid IPv4"),
        ("-bad.example.com", "not a valid host name"),
        ("under_score.example.com", "not a valid host name"),
        ("two words", "not a valid host name"),
        ("", "must not be empty"),
    ],
)
def test_invalid_domains_say_what_to_change(given: str, hint: str) -> None:
    """Schemes, paths (the GCR lesson) and broken hosts are refused with a hint."""
    with pytest.raises(ValueError, match="domain") as caught:
        normalize_domain(given)
    assert hint in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("acme", "acme"),
        ("acme/team-a/sub_group", "acme/team-a/sub_group"),
        ("a.b__c---d", "a.b__c---d"),
    ],
)
def test_repository_prefix_accepts_oci_path_components(
    given: str | None, expected: str | None
) -> None:
    """Valid prefixes pass; empty ones mean no prefix."""
    assert normalize_repository_prefix(given) == expected


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("Acme", "must be lower case: use 'acme'"),
        ("/acme", "must not start or end with '/'"),
        ("acme/", "must not start or end with '/'"),
        ("acme//team", "empty part"),
        ("acme/-team", "'-team' is not a valid"),
        ("acme/te am", "'te am' is not a valid"),
        ("a" * 201, "longer than 200"),
    ],
)
def test_invalid_repository_prefix_is_refused(given: str, hint: str) -> None:
    """Upper case, stray slashes and invalid components are refused."""
    with pytest.raises(ValueError, match="repository_prefix") as caught:
        normalize_repository_prefix(given)
    assert hint in str(caught.value)


@pytest.mark.parametrize("name", ["prod", "Prod-1", "a", "eu.registry_2", "x" * 63])
def test_valid_names(name: str) -> None:
    """Names start with a letter or digit and use letters, digits, '_', '.', '-'."""
    assert TypeAdapter(RegistryName).validate_python(name) == name


@pytest.mark.parametrize("name", ["", "-prod", ".prod", "pro d", "pröd", "x" * 64])
def test_invalid_names(name: str) -> None:
    """Other names are refused."""
    with pytest.raises(ValidationError):
        TypeAdapter(RegistryName).validate_python(name)


def test_docker_hub_domain_is_implied_and_aliases_fold_onto_it() -> None:
    """A dockerhub registry needs no domain; its other host names mean docker.io."""
    assert resolve_domain(Provider.DOCKERHUB, None) == "docker.io"
    assert resolve_domain(Provider.DOCKERHUB, "index.docker.io") == "docker.io"
    assert resolve_domain(Provider.DOCKERHUB, "registry-1.docker.io") == "docker.io"


def test_docker_hub_refuses_another_domain() -> None:
    """A dockerhub integration on another host is a mistake, reported on domain."""
    with pytest.raises(RegistryRuleViolation) as caught:
        resolve_domain(Provider.DOCKERHUB, "ghcr.io")
    assert caught.value.field == "domain"
    assert "provider 'other'" in caught.value.message


def test_public_hosts_are_defaults_and_others_need_a_domain() -> None:
    """GHCR and Quay default to their hosts; ECR, GCR, other... need a domain."""
    assert resolve_domain(Provider.GHCR, None) == "ghcr.io"
    assert resolve_domain(Provider.QUAY, None) == "quay.io"
    assert resolve_domain(Provider.QUAY, "quay.example.com") == "quay.example.com"
    for provider in (Provider.OTHER, Provider.ECR, Provider.GCR, Provider.GAR):
        with pytest.raises(RegistryRuleViolation) as caught:
            resolve_domain(provider, None)
        assert caught.value.field == "domain"
        assert caught.value.message.startswith(f"provider '{provider.value}' has no")
        assert " a other " not in caught.value.message
        assert " a ecr " not in caught.value.message


@pytest.mark.parametrize(
    "domain",
    [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "registry.hub.docker.com",
        "DOCKER.IO",
        "Index.Docker.IO:443",
        "registry.hub.docker.com:443",
    ],
)
def test_docker_hub_hosts_are_docker_hub_whatever_the_provider(domain: str) -> None:
    """Any provider on a Docker Hub host (any case, :443 or not) is Docker Hub."""
    assert is_docker_hub(Provider.OTHER, domain)
    assert is_docker_hub(Provider.QUAY, domain)
    assert resolve_domain(Provider.DOCKERHUB, domain) == "docker.io"


@pytest.mark.parametrize(
    ("provider", "domain"),
    [
        (Provider.OTHER, "ghcr.io"),
        (Provider.OTHER, "docker.io:5000"),
        (Provider.OTHER, "mirror.docker.io.example.com"),
        (Provider.OTHER, None),
        (Provider.GHCR, None),
    ],
)
def test_other_hosts_are_not_docker_hub(provider: Provider, domain: str | None) -> None:
    """Another host or port is not Docker Hub; provider dockerhub always is."""
    assert not is_docker_hub(provider, domain)
    assert is_docker_hub(Provider.DOCKERHUB, domain)


def test_docker_hub_prefix_is_one_namespace() -> None:
    """On Docker Hub a prefix is the user or organisation, not a path."""
    check_provider_rules(Provider.DOCKERHUB, "docker.io", "acme")
    with pytest.raises(RegistryRuleViolation) as caught:
        check_provider_rules(Provider.DOCKERHUB, "docker.io", "acme/team")
    assert caught.value.field == "repository_prefix"
    check_provider_rules(Provider.OTHER, "ghcr.io", "acme/team")
    with pytest.raises(RegistryRuleViolation) as by_domain:
        check_provider_rules(Provider.OTHER, "index.docker.io:443", "acme/team")
    assert by_domain.value.field == "repository_prefix"
    check_provider_rules(Provider.OTHER, "index.docker.io", "acme")


def test_docker_hub_cannot_be_the_caching_registry() -> None:
    """The caching flag on a Docker Hub integration is refused, on provider."""
    with pytest.raises(RegistryRuleViolation) as caught:
        check_provider_rules(Provider.DOCKERHUB, "docker.io", None, is_caching=True)
    assert caught.value.field == "provider"
    check_provider_rules(Provider.OTHER, "ghcr.io", None, is_caching=True)
    with pytest.raises(RegistryRuleViolation) as by_domain:
        check_provider_rules(
            Provider.OTHER, "registry-1.docker.io", None, is_caching=True
        )
    assert by_domain.value.field == "domain"
    assert "Docker Hub" in by_domain.value.message

"""The rules a registry integration's fields follow, one function per rule.

The ``normalize_*`` functions raise ``ValueError`` so pydantic turns them into
field errors; :func:`resolve_domain` and :func:`check_provider_rules` look at
several fields at once and raise :class:`RegistryRuleViolation` naming the field
to fix, which the HTTP API reports like a field error.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field, SecretStr, StringConstraints

from regflow.events.common import Provider
from regflow.oci.client import is_docker_hub_host
from regflow.registries.errors import RegistryRuleViolation

# A name is used in pipeline YAML (``registry: <name>``) and in URLs.
NAME_PATTERN: Final = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
# Account ids end up in Redis keys and URLs; the platform's ids fit this.
ACCOUNT_ID_PATTERN: Final = r"^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,127}$"

DOCKER_HUB_DOMAIN: Final = "docker.io"
# Hosts people write for Docker Hub; all of them mean docker.io.
# Providers that live on one public host use it when no domain is given.
DEFAULT_DOMAINS: Final[dict[Provider, str]] = {
    Provider.DOCKERHUB: DOCKER_HUB_DOMAIN,
    Provider.GHCR: "ghcr.io",
    Provider.QUAY: "quay.io",
}

# The OCI distribution spec's path component, without the ``/`` separator.
_COMPONENT_RE: Final = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE: Final = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NUMERIC_HOST_RE: Final = re.compile(r"^[0-9.]+$")
_MAX_HOSTNAME: Final = 253
_MAX_PORT: Final = 65535
# Leaves room for the image name inside the spec's 255-character repository.
MAX_REPOSITORY_PREFIX: Final = 200
MAX_USERNAME: Final = 256
# Google JSON key files are a few KiB; this bounds what we encrypt and store.
MAX_PASSWORD: Final = 16384


def normalize_domain(value: str) -> str:
    """``host[:port]`` in lower case; raises ValueError saying what to change.

    Schemes, paths and user info are refused: a path belongs in the repository
    prefix (``us.gcr.io/my-project`` is domain ``us.gcr.io`` plus prefix
    ``my-project``), and plain HTTP is a deployment setting, not part of the
    integration.
    """
    domain = value.strip().lower()
    if not domain:
        raise ValueError("domain must not be empty")
    if "://" in domain:
        scheme = domain.split("://", 1)[0]
        raise ValueError(
            f"domain must be a bare host[:port] without the scheme '{scheme}://'; "
            "registries served over plain HTTP are listed in "
            "REGFLOW_INSECURE_REGISTRIES"
        )
    if "/" in domain:
        host, _, path = domain.partition("/")
        raise ValueError(
            f"domain must be a bare host[:port] without a path: use {host!r} as the "
            f"domain and put {path.strip('/')!r} in repository_prefix"
        )
    if "@" in domain:
        raise ValueError("domain must not contain user info ('user@'); use username")
    host, port = _split_port(domain)
    _check_host(host)
    return f"{host}:{port}" if port is not None else host


def _split_port(domain: str) -> tuple[str, str | None]:
    """Split ``host[:port]``, brackets kept around an IPv6 host."""
    if domain.startswith("["):
        end = domain.find("]")
        if end == -1:
            raise ValueError("domain has an unclosed '[' around an IPv6 address")
        host, rest = domain[: end + 1], domain[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("domain has text after the IPv6 address")
        port = rest[1:] if rest else None
    elif domain.count(":") > 1:
        raise ValueError("an IPv6 address in domain must be written in brackets: [::1]")
    else:
        host, sep, port_text = domain.partition(":")
        port = port_text if sep else None
    if port is not None and (not port.isdigit() or not 1 <= int(port) <= _MAX_PORT):
        raise ValueError(f"domain port {port!r} is not a number from 1 to 65535")
    return host, port


def _check_host(host: str) -> None:
    """Raise ValueError unless ``host`` is a DNS name, an IPv4 or a bracketed IPv6."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ValueError(f"domain {host!r} is not a valid IPv6 address") from exc
        return
    if _NUMERIC_HOST_RE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ValueError(f"domain {host!r} is not a valid IPv4 address") from exc
        return
    if len(host) > _MAX_HOSTNAME or not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(
            f"domain {host!r} is not a valid host name (letters, digits and '-' in "
            "dot-separated labels)"
        )


def normalize_repository_prefix(value: str | None) -> str | None:
    """The prefix, or None for an empty one; raises ValueError when invalid."""
    if value is None:
        return None
    prefix = value.strip()
    if not prefix:
        return None
    if len(prefix) > MAX_REPOSITORY_PREFIX:
        raise ValueError(
            f"repository_prefix is longer than {MAX_REPOSITORY_PREFIX} characters"
        )
    if prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError("repository_prefix must not start or end with '/'")
    for component in prefix.split("/"):
        if not component:
            raise ValueError("repository_prefix must not contain an empty part ('//')")
        if _COMPONENT_RE.fullmatch(component):
            continue
        if _COMPONENT_RE.fullmatch(component.lower()):
            raise ValueError(
                f"repository_prefix must be lower case: use {prefix.lower()!r}"
            )
        raise ValueError(
            f"repository_prefix part {component!r} is not a valid repository path "
            "component (lower-case letters and digits, joined by '.', '_', '__' "
            "or dashes)"
        )
    return prefix


def check_password(value: SecretStr) -> SecretStr:
    """Refuse an empty or oversized password; the message never shows it."""
    length = len(value.get_secret_value())
    if length == 0:
        raise ValueError("password must not be empty")
    if length > MAX_PASSWORD:
        raise ValueError(f"password is longer than {MAX_PASSWORD} characters")
    return value


def _check_username(value: str) -> str:
    """Refuse what HTTP Basic cannot carry."""
    if ":" in value:
        raise ValueError("username must not contain ':' (HTTP Basic cannot carry it)")
    if any(not c.isprintable() for c in value):
        raise ValueError("username must not contain control characters or line breaks")
    return value


RegistryName = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(
        description=(
            "Unique in the account regardless of case, kept as written; used "
            "as `registry:` in pipelines"
        ),
        examples=["production"],
    ),
]
Domain = Annotated[
    str,
    AfterValidator(normalize_domain),
    Field(
        description="Registry host[:port], no scheme and no path",
        examples=["ghcr.io", "registry.example.com:5000"],
    ),
]
RepositoryPrefix = Annotated[
    str | None,
    AfterValidator(normalize_repository_prefix),
    Field(
        description="Repository path put between domain and image name",
        examples=["acme/team"],
    ),
]
Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_USERNAME),
    AfterValidator(_check_username),
]


def is_docker_hub(provider: Provider, domain: str | None) -> bool:
    """Whether an integration of ``provider`` on ``domain`` is Docker Hub.

    The one place that decides it: provider ``dockerhub``, or any provider on
    one of Docker Hub's hosts (``other`` on ``index.docker.io`` pushes to Docker
    Hub all the same, so Docker Hub's rules apply to it too).
    """
    if provider is Provider.DOCKERHUB:
        return True
    return domain is not None and is_docker_hub_host(domain)


def resolve_domain(provider: Provider, domain: str | None) -> str | None:
    """The domain an integration of ``provider`` gets when given ``domain``.

    Docker Hub always lives on ``docker.io`` (its other host names are accepted
    and folded onto it); GHCR and Quay default to their public hosts; every
    other provider needs a domain. ``domain`` must already be normalised.

    Raises:
        RegistryRuleViolation: on ``domain``.
    """
    if provider is Provider.DOCKERHUB:
        if domain is None or is_docker_hub_host(domain):
            return DOCKER_HUB_DOMAIN
        raise RegistryRuleViolation(
            "domain",
            f"a dockerhub registry always has the domain {DOCKER_HUB_DOMAIN} (got "
            f"{domain!r}); use provider 'other' for another registry",
        )
    if domain is None:
        default = DEFAULT_DOMAINS.get(provider)
        if default is None:
            raise RegistryRuleViolation(
                "domain",
                f"provider {provider.value!r} has no default domain: give the "
                "registry's host[:port]",
            )
        return default
    return domain


def check_provider_rules(
    provider: Provider,
    domain: str,
    repository_prefix: str | None,
    *,
    is_caching: bool = False,
) -> None:
    """Check the rules that tie fields to the provider.

    They apply to every integration :func:`is_docker_hub` calls Docker Hub,
    whatever its provider. Docker Hub repositories are exactly
    ``<namespace>/<name>``, so a Docker Hub prefix is one path component (the
    user or organisation to push under). Docker Hub cannot be the caching
    registry (its naming and rate limits do not fit build caches).

    Raises:
        RegistryRuleViolation: naming ``domain``, ``repository_prefix`` or
            ``provider`` (``domain`` when only the domain makes it Docker Hub).
    """
    if not is_docker_hub(provider, domain):
        return
    if provider is Provider.DOCKERHUB and domain != DOCKER_HUB_DOMAIN:
        raise RegistryRuleViolation(
            "domain", f"a dockerhub registry always has the domain {DOCKER_HUB_DOMAIN}"
        )
    if repository_prefix is not None and "/" in repository_prefix:
        raise RegistryRuleViolation(
            "repository_prefix",
            f"on Docker Hub ({domain}) the prefix is one namespace (the user or "
            f"organisation), not a path: got {repository_prefix!r}",
        )
    if is_caching:
        raise RegistryRuleViolation(
            "provider" if provider is Provider.DOCKERHUB else "domain",
            docker_hub_caching_message(domain),
        )


def docker_hub_caching_message(domain: str) -> str:
    """Why a Docker Hub integration on ``domain`` cannot be the caching registry."""
    return (
        f"Docker Hub ({domain}) cannot be the caching registry: its naming and "
        "rate limits do not fit build caches"
    )

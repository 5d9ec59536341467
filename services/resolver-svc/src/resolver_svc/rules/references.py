"""Composing and validating ``domain/[prefix/]image_name:tag``.

Decisions (the platform documents none of these):

* An ``image_name`` whose first path component looks like a host (it holds a
  ``.`` or a ``:``, or is ``localhost``, and more components follow: Docker's own
  rule) is rejected: the domain always comes from the registry integration.
* The integration's repository prefix is inserted unless ``image_name`` already
  starts with that prefix as whole path components (prefix ``acme``:
  ``web`` -> ``acme/web``, ``acme/web`` stays, ``acme-web`` -> ``acme/acme-web``,
  ``acme`` -> ``acme/acme``).
* Names are not lower-cased silently: an upper-case name fails with a suggestion.
* Docker Hub repositories must be exactly ``namespace/name``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from regflow.events import RegistryView
from regflow.events.common import REPOSITORY_RE, TAG_RE
from regflow.registries.rules import is_docker_hub
from resolver_svc.rules.errors import ResolutionError, ResolutionProblem

_REPOSITORY_MAX_LENGTH: Final = 255
_DOCKER_HUB_COMPONENTS: Final = 2


def registry_domain(registry: RegistryView) -> str:
    """The host images are pushed to, as the integration stores it.

    The registry store always keeps a resolved domain (Docker Hub's included),
    so an empty one is a broken view, not a default to fill in: it raises
    ResolutionError (REGISTRY_MISCONFIGURED), as does a domain with a path.
    """
    domain = registry.domain.strip().rstrip("/")
    if not domain:
        raise ResolutionError(
            ResolutionProblem.REGISTRY_MISCONFIGURED,
            f"registry {registry.name!r} has no domain; set one on the integration",
            registry=registry.name,
        )
    if "/" in domain:
        raise ResolutionError(
            ResolutionProblem.REGISTRY_MISCONFIGURED,
            f"registry {registry.name!r} has no usable domain ({registry.domain!r}); "
            "put any path in its repository prefix",
            registry=registry.name,
        )
    return domain


def compose_repository(registry: RegistryView, image_name: str) -> str:
    """The repository path in ``registry`` for ``image_name``, validated.

    Raises ResolutionError (INVALID_NAME) with the reason and, where one exists,
    the fix.
    """
    name = registry.name
    if "@" in image_name or ":" in image_name.rpartition("/")[2]:
        raise ResolutionError(
            ResolutionProblem.INVALID_NAME,
            f"image_name {image_name!r} must not carry a tag or digest; "
            "use tag or tags",
            registry=name,
        )
    first, slash, _ = image_name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        raise ResolutionError(
            ResolutionProblem.INVALID_NAME,
            f"image_name {image_name!r} starts with a registry host {first!r}; "
            f"the host comes from registry {name!r}, so leave it out",
            registry=name,
        )
    prefix = (registry.repository_prefix or "").strip().strip("/")
    if prefix and not image_name.startswith(prefix + "/"):
        repository = f"{prefix}/{image_name}"
    else:
        repository = image_name
    _check_repository(repository, registry)
    return repository


def _check_repository(repository: str, registry: RegistryView) -> None:
    name = registry.name
    if not REPOSITORY_RE.fullmatch(repository) or len(repository) > (
        _REPOSITORY_MAX_LENGTH
    ):
        hint = ""
        lowered = repository.lower()
        if lowered != repository and REPOSITORY_RE.fullmatch(lowered):
            hint = f" (names are lower case: {lowered!r})"
        raise ResolutionError(
            ResolutionProblem.INVALID_NAME,
            f"{repository!r} is not a valid repository name{hint}",
            registry=name,
        )
    components = repository.split("/")
    if (
        is_docker_hub(registry.provider, registry.domain)
        and len(components) != _DOCKER_HUB_COMPONENTS
    ):
        raise ResolutionError(
            ResolutionProblem.INVALID_NAME,
            f"Docker Hub repositories are 'namespace/name', got {repository!r}; "
            f"set image_name to '<your Docker Hub user or org>/{components[-1]}'",
            registry=name,
        )


def check_tags(tags: Iterable[str], *, registry: str) -> list[str]:
    """``tags`` without duplicates, in order; raises INVALID_TAG on a bad one."""
    unique: list[str] = []
    for tag in tags:
        if not TAG_RE.fullmatch(tag):
            raise ResolutionError(
                ResolutionProblem.INVALID_TAG,
                f"{tag!r} is not a valid tag: 1 to 128 of [A-Za-z0-9_.-], "
                "not starting with '.' or '-'",
                registry=registry,
            )
        if tag not in unique:
            unique.append(tag)
    return unique

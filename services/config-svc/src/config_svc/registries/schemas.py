"""Request and response bodies of the registries API.

Credentials go in as ``username`` and ``password`` and never come out: a
response says only ``has_credentials`` and the ``username``.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from regflow.events import FailureReason, Provider
from regflow.registries import AccountRegistries, RegistryPatch, RegistrySummary
from regflow.registries.models import Password
from regflow.registries.rules import Domain, RegistryName, RepositoryPrefix, Username


class RegistryCreate(BaseModel):
    """A registry integration to add to the account."""

    model_config = ConfigDict(extra="forbid")

    name: RegistryName
    provider: Provider
    domain: Domain | None = Field(
        default=None,
        description=(
            "Registry host[:port], no scheme and no path. Optional for dockerhub "
            "(always docker.io), ghcr (ghcr.io) and quay (quay.io)"
        ),
    )
    repository_prefix: RepositoryPrefix = None
    username: Username | None = None
    password: Password | None = None


class RegistryUpdate(RegistryPatch):
    """Fields to change; omitted fields keep their value.

    ``null`` for ``domain`` restores the provider's default domain, for
    ``repository_prefix`` removes it, and for both ``username`` and
    ``password`` removes the credentials. The name cannot change. A new
    ``domain`` or ``provider`` for a registry with credentials needs
    ``password`` again, or both ``null``: stored credentials never follow a
    registry to another host.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConnection(BaseModel):
    """Unsaved registry settings to test before saving them."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider
    domain: Domain | None = None
    username: Username | None = None
    password: Password | None = None


class RegistryPublic(BaseModel):
    """A registry integration as the API shows it (no secret)."""

    name: str
    provider: Provider
    domain: str
    repository_prefix: str | None
    username: str | None
    has_credentials: bool
    is_default: bool
    is_caching: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @classmethod
    def of(cls, integration: RegistrySummary) -> RegistryPublic:
        """The public form of ``integration`` (a summary: nothing to decrypt)."""
        return cls(
            name=integration.name,
            provider=integration.provider,
            domain=integration.domain,
            repository_prefix=integration.repository_prefix,
            username=integration.username,
            has_credentials=integration.has_credentials,
            is_default=integration.is_default,
            is_caching=integration.is_caching,
            created_at=integration.created_at,
            updated_at=integration.updated_at,
        )


class RegistryListPublic(BaseModel):
    """Every registry of an account and its account-wide choices."""

    version: int = Field(description="Grows by one with every change in the account")
    default_registry: str | None
    caching_registry: str | None
    registries: list[RegistryPublic]

    @classmethod
    def of(cls, account: AccountRegistries) -> RegistryListPublic:
        """The public form of a snapshot."""
        return cls(
            version=account.version,
            default_registry=account.default_registry,
            caching_registry=account.caching_registry,
            registries=[RegistryPublic.of(r) for r in account.registries],
        )


class RegistrySelection(BaseModel):
    """Which registry to make the default (or caching) one; null for none."""

    model_config = ConfigDict(extra="forbid")

    name: RegistryName | None


class RegistrySelectionPublic(BaseModel):
    """The account's default and caching registry after a change."""

    version: int
    default_registry: str | None
    caching_registry: str | None


class ConnectionTestResult(BaseModel):
    """What a registry said to ``GET /v2/`` with the given credentials.

    A registry that answers but refuses the credentials is a successful test
    with ``ok: false``, not an error of this API.
    """

    ok: bool
    reason: FailureReason | None = Field(
        default=None,
        description="Failure class: auth, network, registry_error, ... (null if ok)",
    )
    status_code: int | None = Field(
        default=None, description="The registry's HTTP status, when it answered"
    )
    message: str | None = Field(
        default=None, description="What went wrong, with the registry's own text"
    )

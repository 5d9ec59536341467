"""Payload of the registry-changes topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from regflow.events.common import FrozenModel, Provider
from regflow.events.envelope import Envelope


class RegistryView(FrozenModel):
    """A registry integration as other services may see it: never credentials."""

    name: str
    provider: Provider
    domain: str
    repository_prefix: str | None = None


class RegistryChange(FrozenModel):
    """One change to an account's registry integrations.

    ``version`` grows by one with every change in the account, so a consumer that
    has applied version N can ignore any redelivered event at or below N. The
    account-wide choices (default and caching registry) are carried in full with
    every change, because changing one registry's flag changes another's.
    """

    change: Literal["created", "updated", "deleted"]
    version: int = Field(ge=1)
    registry: RegistryView
    default_registry: str | None = None
    caching_registry: str | None = None


class RegistryChangedEvent(Envelope[RegistryChange]):
    """An operator added, changed or removed a registry integration."""

    event_type: Literal["registry.changed"] = "registry.changed"
    schema_version: Literal[1] = 1

"""An account's registries as the resolver knows them at one moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from regflow.events import RegistryView


@dataclass(frozen=True)
class AccountRegistries:
    """Every registry integration of one account, and its account-wide choices.

    ``version`` is the last applied change's version (0: no change seen yet).
    """

    version: int = 0
    registries: Mapping[str, RegistryView] = field(default_factory=dict)
    default_registry: str | None = None
    caching_registry: str | None = None

    def get(self, name: str) -> RegistryView | None:
        """The registry called ``name``, if the account has one."""
        return self.registries.get(name)

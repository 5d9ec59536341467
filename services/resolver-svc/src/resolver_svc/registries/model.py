"""An account's registries as the resolver knows them at one moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from regflow.events import RegistryView


@dataclass(frozen=True)
class AccountRegistries:
    """Every registry integration of one account, and its account-wide choices.

    ``version`` is the last applied change's version (0: no change seen yet);
    ``changed_at`` when it was applied (None: never, or not recorded).
    """

    version: int = 0
    changed_at: datetime | None = None
    registries: Mapping[str, RegistryView] = field(default_factory=dict)
    default_registry: str | None = None
    caching_registry: str | None = None

    def settled(self, now: datetime, quiet: timedelta) -> bool:
        """Whether no change is likely on its way: seen, and unchanged for ``quiet``.

        A view without ``changed_at`` but with a version predates that field,
        so it has been quiet for long.
        """
        if self.version == 0:
            return False
        return self.changed_at is None or now - self.changed_at >= quiet

    def get(self, name: str) -> RegistryView | None:
        """The registry called ``name``, if the account has one."""
        return self.registries.get(name)

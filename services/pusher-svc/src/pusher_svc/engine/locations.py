"""Where the engine last saw each blob, so a copy can mount instead of upload."""

from __future__ import annotations

from collections import OrderedDict

# One entry per (registry, identity, digest): about 200 bytes each.
DEFAULT_MAX_ENTRIES = 100_000

RegistryKey = tuple[str, str]  # (registry host, credential identity)


class BlobLocations:
    """A bounded, least-recently-used map of blob digest to a repository holding it.

    Keyed by registry host and credential identity as well, so what one account
    pushed is never offered as a mount source to another. Entries are hints: a
    mount from a stale one just fails and the blob is uploaded. In memory, for
    one event loop; it forgets everything on restart.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def remember(self, registry: RegistryKey, digest: str, repository: str) -> None:
        """Record that ``repository`` of ``registry`` holds ``digest``."""
        key = (*registry, digest)
        self._entries[key] = repository
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def find(self, registry: RegistryKey, digest: str) -> str | None:
        """A repository of ``registry`` believed to hold ``digest``, if any."""
        key = (*registry, digest)
        repository = self._entries.get(key)
        if repository is not None:
            self._entries.move_to_end(key)
        return repository

    def __len__(self) -> int:
        return len(self._entries)

"""Each account's caching registry, kept from registry-change events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from redis.asyncio import Redis

from cache_svc.records.layout import CacheKeys
from regflow.events import RegistryChange
from regflow.redis import redis_errors

# KEYS[1]: the account hash. ARGV: version, caching registry ("" for none).
# Applies only a newer version; returns 1 if applied.
_APPLY: Final = """
local before = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= before then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'caching_registry', ARGV[2])
return 1
"""


class AccountRegistryStore:
    """The caching registry of each account (every change carries it in full)."""

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._apply = redis.register_script(_APPLY)

    async def apply(self, account_id: str, change: RegistryChange) -> bool:
        """Store the change's caching registry unless a newer change was applied.

        One atomic call; redeliveries are no-ops. Raises TransientError when
        Redis is unavailable.
        """
        async with redis_errors("recording the caching registry"):
            applied = await self._apply(
                keys=[self._keys.account(account_id)],
                args=[change.version, change.caching_registry or ""],
            )
        return bool(applied)


def caching_registry_of(account: Mapping[str, str]) -> str | None:
    """The caching registry name in a decoded account hash, if it has one."""
    return account.get("caching_registry") or None

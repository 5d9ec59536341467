"""The registry view kept in Redis from ``RegistryChangedEvent``s.

Layout (one HASH per account)::

    <prefix>:resolver:registries:<account_id>
        version             last applied change version (decimal)
        changed_at          when the last change was applied here: epoch
                            milliseconds on the resolver's clock (absent in
                            views written before it existed: read as long ago)
        default_registry    name of the account's default registry, "" for none
        caching_registry    name of the account's caching registry, "" for none
        registry:<name>     RegistryView as JSON (name, provider, domain, prefix)

A change is applied by one Lua script, so the version check and the write are a
single atomic step: a redelivered change (version at or below the stored one) is
ignored, and two consumers racing on one account cannot interleave. The version
is kept after the last registry is deleted, so late redeliveries stay ignored.

``changed_at`` is the apply time rather than the event's ``occurred_at`` on
purpose: it answers "are changes arriving right now?", which is what a step
held for a change in flight needs to know. While the resolver catches up on a
backlog of changes, old events are applied now, and steps should wait for them;
a redelivered (ignored) change does not touch it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from redis.asyncio import Redis

from regflow.events import RegistryChange, RegistryView
from regflow.redis import RedisKeys, as_text, redis_errors
from resolver_svc.registries.model import AccountRegistries

log = structlog.get_logger(__name__)

_REGISTRY_FIELD: Final = "registry:"

# KEYS[1]: the account hash.
# ARGV: version, change, registry name, registry JSON, default, caching,
# apply time (epoch ms).
# Returns {applied (0/1), version stored before this call}.
_APPLY_CHANGE: Final = """
local before = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local version = tonumber(ARGV[1])
if version <= before then
  return {0, before}
end
if ARGV[2] == 'deleted' then
  redis.call('HDEL', KEYS[1], 'registry:' .. ARGV[3])
else
  redis.call('HSET', KEYS[1], 'registry:' .. ARGV[3], ARGV[4])
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'changed_at', ARGV[7],
           'default_registry', ARGV[5], 'caching_registry', ARGV[6])
return {1, before}
"""


@dataclass(frozen=True)
class ApplyOutcome:
    """What applying one change did."""

    applied: bool
    previous_version: int


def _utcnow() -> datetime:
    return datetime.now(UTC)


# TODO(regflow#2): the view is built only from the registry-changes topic; a
# fresh Redis, a skipped version or topic retention loses registries silently
# (a gap is only logged). Rebuild an account from a config-svc snapshot when the
# view is empty or a version gap shows, or make the topic compacted per registry.
class RegistryViewStore:
    """Reads and updates the per-account registry view in Redis."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._apply_script = redis.register_script(_APPLY_CHANGE)

    def account_key(self, account_id: str) -> str:
        """The HASH holding one account's view."""
        return self._keys.key("resolver", "registries", account_id)

    async def apply(self, account_id: str, change: RegistryChange) -> ApplyOutcome:
        """Apply ``change`` unless a change of the same or a later version was.

        One atomic Redis call; safe to repeat (redelivery is a no-op). Raises
        TransientError when Redis is unreachable; nothing is written then.
        """
        async with redis_errors("applying a registry change"):
            applied, before = await self._apply_script(
                keys=[self.account_key(account_id)],
                args=[
                    change.version,
                    change.change,
                    change.registry.name,
                    change.registry.model_dump_json(),
                    change.default_registry or "",
                    change.caching_registry or "",
                    int(self._clock().timestamp() * 1000),
                ],
            )
        return ApplyOutcome(applied=bool(applied), previous_version=int(before))

    async def load(self, account_id: str) -> AccountRegistries:
        """The account's view as of the last applied change (empty if none).

        Raises TransientError when Redis is unreachable.
        """
        async with redis_errors("reading the registry view"):
            raw = await self._redis.hgetall(self.account_key(account_id))
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        registries: dict[str, RegistryView] = {}
        for name, value in fields.items():
            if name.startswith(_REGISTRY_FIELD):
                view = RegistryView.model_validate_json(value)
                registries[view.name] = view
        changed_at = fields.get("changed_at")
        return AccountRegistries(
            version=int(fields.get("version", "0")),
            changed_at=(
                datetime.fromtimestamp(int(changed_at) / 1000, tz=UTC)
                if changed_at
                else None
            ),
            registries=registries,
            default_registry=fields.get("default_registry") or None,
            caching_registry=fields.get("caching_registry") or None,
        )

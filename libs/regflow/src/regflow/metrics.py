"""Counters kept in Redis for dashboards (the catalogue is docs/metrics.md).

Every name here is a key or a hash field a dashboard may read, so renaming one is
a breaking change for dashboards: add, do not rename.
"""

from __future__ import annotations

from typing import Final, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from regflow.redis import RedisKeys

# HASH <prefix>:metrics:pushes:<account>:<registry>, fields below.
PushField = Literal[
    "succeeded",  # pushes that reached the destination under every tag
    "failed",  # pushes that ended in a failed push result (pusher or resolver)
    "bytes",  # blob bytes uploaded by succeeded pushes (skipped blobs excluded)
]
# SET <prefix>:metrics:registries: "<account>:<registry>" members with counters.
# HASH <prefix>:metrics:dead-letters: topic name -> messages sent to its DLQ.
UNRESOLVED_REGISTRY: Final = "-"  # registry name for failures that named none


class PushMetrics:
    """Push counters per account and registry."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    def pushes_key(self, account_id: str, registry: str) -> str:
        """The HASH holding one registry's counters."""
        return self._keys.key("metrics", "pushes", account_id, registry)

    async def record_push(
        self,
        account_id: str,
        registry: str | None,
        *,
        succeeded: bool,
        bytes_moved: int = 0,
    ) -> None:
        """Count one finished push; one round trip, atomic."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self.queue_push(
                pipe, account_id, registry, succeeded=succeeded, bytes_moved=bytes_moved
            )
            await pipe.execute()

    async def record_push_once(
        self,
        push_id: str,
        account_id: str,
        registry: str | None,
        *,
        succeeded: bool,
        bytes_moved: int = 0,
        remember_seconds: int = 7 * 24 * 3600,
    ) -> bool:
        """Count a push unless ``push_id`` was counted before; True if counted.

        For redelivered events: the id is remembered for ``remember_seconds``.
        A crash between remembering and counting loses the count rather than
        doubling it.
        """
        marker = self._keys.key("metrics", "counted", push_id)
        if not await self._redis.set(marker, b"1", nx=True, ex=remember_seconds):
            return False
        await self.record_push(
            account_id, registry, succeeded=succeeded, bytes_moved=bytes_moved
        )
        return True

    def queue_push(
        self,
        pipe: Pipeline,
        account_id: str,
        registry: str | None,
        *,
        succeeded: bool,
        bytes_moved: int = 0,
    ) -> None:
        """Add the counting of one push to ``pipe``, to commit with other writes."""
        registry = registry or UNRESOLVED_REGISTRY
        key = self.pushes_key(account_id, registry)
        field: PushField = "succeeded" if succeeded else "failed"
        pipe.hincrby(key, field, 1)
        if bytes_moved:
            pipe.hincrby(key, "bytes", bytes_moved)
        pipe.sadd(self._keys.key("metrics", "registries"), f"{account_id}:{registry}")

    async def read(self, account_id: str, registry: str) -> dict[PushField, int]:
        """The counters of one registry (zero when never counted)."""
        raw: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[assignment]
            self.pushes_key(account_id, registry)
        )
        counts = {k.decode(): int(v) for k, v in raw.items()}
        return {
            "succeeded": counts.get("succeeded", 0),
            "failed": counts.get("failed", 0),
            "bytes": counts.get("bytes", 0),
        }


class DeadLetterMetrics:
    """How many messages each topic sent to its dead-letter topic."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._key = keys.key("metrics", "dead-letters")

    async def record(self, topic: str) -> None:
        """Count one dead-lettered message of ``topic``."""
        await self._redis.hincrby(self._key, topic, 1)

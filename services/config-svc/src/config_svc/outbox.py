"""The relay that moves registry-change events from the Redis outbox to Kafka.

The store appends each change's event to the outbox in the transaction that
makes the change (:mod:`regflow.registries.store`). This relay publishes the
entries oldest first and removes each one only after the broker acknowledged
it, so a crash or a broker outage delays events but never loses one; a crash
between the ack and the removal publishes that event again (at-least-once:
consumers skip versions they have applied).

One relay runs at a time across all config-svc instances (a Redis lock with a
lease), which keeps each account's events in version order on the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final, cast

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from regflow.errors import TransientError
from regflow.events import REGISTRY_CHANGES
from regflow.kafka import EventProducer
from regflow.redis import RedisKeys
from regflow.registries import outbox_key

log = structlog.get_logger(__name__)

# Entries read per round trip.
BATCH_SIZE: Final = 100
# The relay lock expires this long after its last renewal (seconds), so a
# relay that died frees the outbox for another instance.
LEASE_SECONDS: Final = 30.0


def _raise_if_cancelled(exc: BaseException) -> None:
    """Re-raise a cancellation that a client library turned into its own error.

    redis-py drops the connection when a command is cancelled, and the next
    command in a ``finally`` then fails with ConnectionError, which would
    otherwise hide the cancellation from the task being stopped.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


class OutboxRelay:
    """Publishes pending registry-change events; shared by one process's tasks."""

    def __init__(
        self, *, batch_size: int = BATCH_SIZE, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        # One drain at a time in this process; the Redis lock covers the others.
        self._local = asyncio.Lock()

    @staticmethod
    def dead_letter_key(keys: RedisKeys) -> str:
        """Where entries that are not valid events are moved (kept for people)."""
        return outbox_key(keys) + ":dead"

    async def drain(
        self, redis: Redis, keys: RedisKeys, producer: EventProducer
    ) -> int:
        """Publish every pending event, oldest first; return how many were published.

        Called after each write and periodically. Blocks on Redis and on the
        broker's acknowledgements. Never raises for an outage: a broker or Redis
        failure stops this drain (logged at WARNING) and leaves the rest pending
        for the next one. Returns 0 at once when another instance is draining.
        """
        key = outbox_key(keys)
        published = 0
        async with self._local:
            lock = redis.lock(
                keys.key("outbox", "registry-changes", "relay"),
                timeout=self._lease_seconds,
                blocking=False,
            )
            try:
                if not await lock.acquire():
                    return 0
                try:
                    while entries := await self._peek(redis, key):
                        for raw in entries:
                            await self._relay_one(redis, keys, producer, raw)
                            published += 1
                            # Keep the lease while the broker is slow.
                            await lock.reacquire()
                finally:
                    with contextlib.suppress(LockError, RedisError):
                        await lock.release()
            except TransientError as exc:
                _raise_if_cancelled(exc)
                log.warning(
                    "registry changes not published yet; will retry",
                    error=str(exc),
                    published=published,
                )
            except LockError as exc:
                _raise_if_cancelled(exc)
                log.warning("outbox relay lost its lease; another relay continues")
            except RedisError as exc:
                _raise_if_cancelled(exc)
                log.warning("outbox relay could not reach Redis", error=str(exc))
        if published:
            log.debug("registry changes published", count=published)
        return published

    async def _peek(self, redis: Redis, key: str) -> list[bytes]:
        """The oldest entries, without removing them."""
        return cast("list[bytes]", await redis.lrange(key, 0, self._batch_size - 1))

    async def _relay_one(
        self, redis: Redis, keys: RedisKeys, producer: EventProducer, raw: bytes
    ) -> None:
        key = outbox_key(keys)
        try:
            event = REGISTRY_CHANGES.decode(raw)
        except ValidationError:
            # Cannot happen with entries the store wrote; if it does, keep the
            # bytes for a person and do not block the events behind it.
            log.exception("outbox entry is not a registry change; moved aside")
            async with redis.pipeline(transaction=True) as pipe:
                pipe.lrem(key, 1, raw)  # type: ignore[arg-type]  # bytes are accepted
                pipe.rpush(self.dead_letter_key(keys), raw)
                await pipe.execute()
            return
        await producer.publish(REGISTRY_CHANGES, event)
        await redis.lrem(key, 1, raw)  # type: ignore[arg-type]  # bytes are accepted

    async def run(
        self,
        redis: Redis,
        keys: RedisKeys,
        producer: EventProducer,
        *,
        interval: float,
        stop: asyncio.Event,
    ) -> None:
        """Drain now and then every ``interval`` seconds, until ``stop`` is set.

        Stopping waits for the round in hand instead of cancelling it, so no
        Redis or broker call is cut off half-way.
        """
        while not stop.is_set():
            try:
                await self.drain(redis, keys, producer)
            except Exception:
                # A bug in one round must not end the safety net for good.
                log.exception("outbox relay round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

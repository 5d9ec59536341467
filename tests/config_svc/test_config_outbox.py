"""The outbox relay: no change lost between Redis and the broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer

from config_svc.outbox import OutboxRelay
from config_svc.runtime import ConfigRuntime
from config_svc.settings import ConfigSettings
from regflow.errors import TransientError
from regflow.events import REGISTRY_CHANGES, Provider, Topic
from regflow.events.envelope import Envelope
from regflow.kafka import KafkaEventProducer, RecordingProducer, ensure_topics
from regflow.redis import RedisKeys
from regflow.registries import RegistryStore, SecretBox, outbox_key
from regflow.service import ServiceContext

pytestmark = pytest.mark.integration


class FlakyProducer(RecordingProducer):
    """The recording fake, failing or stalling the way a broker can, when told."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.gate = asyncio.Event()
        self.gate.set()
        self._published = asyncio.Condition()

    async def publish(self, topic: Topic[Any], event: Envelope[Any]) -> None:
        """Wait at the gate; raise TransientError while failures remain; record."""
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise TransientError("broker unavailable")
        await super().publish(topic, event)
        async with self._published:
            self._published.notify_all()

    async def wait_for(self, count: int) -> None:
        """Return once ``count`` events were published."""
        async with self._published:
            await self._published.wait_for(lambda: len(self.published) >= count)


@pytest.fixture
def producer() -> FlakyProducer:
    """Replaces the app's recording producer in this module."""
    return FlakyProducer()


@pytest.fixture
def keys(redis_prefix: str) -> RedisKeys:
    """Keys under this test's prefix."""
    return RedisKeys(redis_prefix)


@pytest.fixture
def store(redis_client: redis.asyncio.Redis, keys: RedisKeys) -> RegistryStore:
    """A store whose writes fill the outbox."""
    return RegistryStore(redis_client, keys, SecretBox([SecretBox.generate_key()]))


async def _changes(store: RegistryStore, account: str, count: int) -> None:
    for i in range(count):
        await store.create(account, name=f"r{i}", provider=Provider.QUAY)


def _runtime(settings: ConfigSettings, **timings: float) -> ConfigRuntime:
    """The app's runtime, its outbox timings replaced by ``timings``.

    Its context is the ``context`` fixture: this test's Redis prefix and producer.
    """
    return ConfigRuntime.from_settings(settings.model_copy(update=timings))


async def test_drain_publishes_in_order_and_empties_the_outbox(
    store: RegistryStore, redis_client: redis.asyncio.Redis, keys: RedisKeys
) -> None:
    """Every pending event is published oldest first, then removed."""
    await _changes(store, "acme", 5)
    producer = RecordingProducer()
    assert await OutboxRelay(batch_size=2).drain(redis_client, keys, producer) == 5
    versions = [e.data.version for e in producer.events(REGISTRY_CHANGES)]
    assert versions == [1, 2, 3, 4, 5]
    assert await redis_client.llen(outbox_key(keys)) == 0
    assert await OutboxRelay().drain(redis_client, keys, producer) == 0


async def test_broker_failure_keeps_events_until_a_later_drain(
    store: RegistryStore, redis_client: redis.asyncio.Redis, keys: RedisKeys
) -> None:
    """A failed publish stops the drain; nothing is lost or reordered."""
    await _changes(store, "acme", 3)
    relay = OutboxRelay()
    producer = FlakyProducer(failures=1)
    assert await relay.drain(redis_client, keys, producer) == 0
    assert await redis_client.llen(outbox_key(keys)) == 3
    assert await relay.drain(redis_client, keys, producer) == 3
    versions = [e.data.version for e in producer.events(REGISTRY_CHANGES)]
    assert versions == [1, 2, 3]


async def test_unreadable_entry_is_moved_aside(
    store: RegistryStore, redis_client: redis.asyncio.Redis, keys: RedisKeys
) -> None:
    """An entry that is not an event goes to the dead list; the rest flow on."""
    await redis_client.rpush(outbox_key(keys), b"{not json")
    await _changes(store, "acme", 2)
    producer = RecordingProducer()
    assert await OutboxRelay().drain(redis_client, keys, producer) == 3
    assert len(producer.events(REGISTRY_CHANGES)) == 2
    dead = OutboxRelay.dead_letter_key(keys)
    assert await redis_client.lrange(dead, 0, -1) == [b"{not json"]


async def test_one_relay_at_a_time_across_instances(
    store: RegistryStore, redis_client: redis.asyncio.Redis, keys: RedisKeys
) -> None:
    """While another instance holds the relay lease, a drain publishes nothing."""
    await _changes(store, "acme", 1)
    lease = redis_client.lock(
        keys.key("outbox", "registry-changes", "relay"), timeout=30
    )
    assert await lease.acquire(blocking=False)
    producer = RecordingProducer()
    try:
        assert await OutboxRelay().drain(redis_client, keys, producer) == 0
    finally:
        await lease.release()
    assert await OutboxRelay().drain(redis_client, keys, producer) == 1


async def test_runtime_drains_leftovers_on_start_and_stops_cleanly(
    store: RegistryStore,
    settings: ConfigSettings,
    producer: FlakyProducer,
    context: ServiceContext,
) -> None:
    """Changes a crashed instance left unpublished go out when the next starts."""
    await _changes(store, "acme", 2)
    runtime = _runtime(settings, outbox_interval_seconds=0.05)
    await runtime.start(context)
    try:
        async with asyncio.timeout(10):
            await producer.wait_for(2)
        await _changes(store, "other", 1)  # a write that no request published
        async with asyncio.timeout(10):
            await producer.wait_for(3)
    finally:
        await runtime.stop(context)
    assert await context.redis.llen(outbox_key(context.keys)) == 0


async def test_writes_succeed_while_the_broker_is_down(
    api: httpx.AsyncClient,
    producer: FlakyProducer,
    context: ServiceContext,
) -> None:
    """The API answers 201 when publishing fails; the event waits in the outbox."""
    producer.failures = 100
    response = await api.post(
        "/v1/accounts/acme/registries", json={"name": "q", "provider": "quay"}
    )
    assert response.status_code == 201
    assert producer.events(REGISTRY_CHANGES) == []
    assert await context.redis.llen(outbox_key(context.keys)) == 1

    producer.failures = 0
    relay = OutboxRelay()
    assert await relay.drain(context.redis, context.keys, producer) == 1
    [event] = producer.events(REGISTRY_CHANGES)
    assert (event.data.change, event.data.registry.name) == ("created", "q")


async def test_slow_broker_does_not_hold_the_publishing_step(
    store: RegistryStore,
    settings: ConfigSettings,
    producer: FlakyProducer,
    context: ServiceContext,
) -> None:
    """publish_pending gives up waiting after its timeout; the drain still ends."""
    await _changes(store, "acme", 1)
    runtime = _runtime(settings, outbox_publish_timeout_seconds=0.2)
    producer.gate.clear()
    async with asyncio.timeout(5):
        await runtime.publish_pending(context)
    assert producer.published == []
    producer.gate.set()
    async with asyncio.timeout(5):
        await producer.wait_for(1)
    await runtime.stop(context)
    assert await context.redis.llen(outbox_key(context.keys)) == 0


@pytest.mark.timeout(120)
async def test_relay_publishes_to_a_real_broker(
    store: RegistryStore,
    redis_client: redis.asyncio.Redis,
    keys: RedisKeys,
    kafka_bootstrap: str,
) -> None:
    """Through the Kafka producer the events land on the topic, keyed by account."""
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await _changes(store, account, 3)
    settings = ConfigSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_idempotent_producer=False,
        kafka_topic_partitions=1,
        secret_keys=SecretBox.generate_key(),
    )
    await ensure_topics(settings, [REGISTRY_CHANGES])
    producer = KafkaEventProducer(settings, client_id="outbox-test")
    await producer.start()
    try:
        assert await OutboxRelay().drain(redis_client, keys, producer) == 3
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        REGISTRY_CHANGES.name,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    mine: list[tuple[bytes | None, int]] = []
    try:
        async with asyncio.timeout(60):
            while len(mine) < 3:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = REGISTRY_CHANGES.decode(record.value)
                        if event.account_id == account:
                            mine.append((record.key, event.data.version))
    finally:
        await consumer.stop()
    assert mine == [(account.encode(), 1), (account.encode(), 2), (account.encode(), 3)]

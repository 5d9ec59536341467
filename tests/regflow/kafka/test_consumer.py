"""The shared consumer against a real broker: commits, dead letters, retries, drain."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalStateError

from regflow.errors import PermanentError, TransientError
from regflow.events import (
    STEP_COMPLETED,
    ImageRef,
    StepCompleted,
    StepCompletedEvent,
    Topic,
)
from regflow.kafka import (
    ConsumerSpec,
    Delivery,
    EventConsumer,
    HandlerRetryPolicy,
    KafkaEventProducer,
    RecordingProducer,
    ensure_topics,
)
from regflow.settings import CommonSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DIGEST = "sha256:" + "cd" * 32


def _event(build_id: str) -> StepCompletedEvent:
    return StepCompletedEvent.new(
        producer="test",
        account_id="acme",
        data=StepCompleted(
            pipeline_id="p",
            build_id=build_id,
            step_name="build",
            step_type="build",
            status="succeeded",
            image=ImageRef(registry="r:5000", repository="acme/web", digest=DIGEST),
        ),
    )


@pytest.fixture
def topic() -> Topic[StepCompletedEvent]:
    """A fresh topic per test, with the steps topic's model and key."""
    return Topic(
        f"test.steps.{uuid.uuid4().hex[:8]}", StepCompletedEvent, STEP_COMPLETED.key
    )


@pytest.fixture
def settings(kafka_bootstrap: str) -> CommonSettings:
    """Settings pointing at the session's broker (which lacks idempotence)."""
    return CommonSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_idempotent_producer=False,
        kafka_topic_partitions=1,
    )


@pytest.fixture
async def producer(settings: CommonSettings) -> AsyncIterator[KafkaEventProducer]:
    """A started producer, stopped after the test."""
    producer = KafkaEventProducer(settings, client_id="test")
    await producer.start()
    yield producer
    await producer.stop()


class Recorder:
    """A handler that records events and fails as told."""

    def __init__(
        self, fail: dict[str, list[Exception]] | None = None, want: int = 1
    ) -> None:
        self.handled: list[str] = []
        self.calls: list[str] = []
        self._fail = fail or {}
        self._want = want
        self.seen = asyncio.Event()

    async def __call__(self, event: StepCompletedEvent, _: Delivery) -> None:
        """Record the call; raise the next planned failure for this build, if any."""
        self.calls.append(event.data.build_id)
        errors = self._fail.get(event.data.build_id)
        if errors:
            raise errors.pop(0)
        self.handled.append(event.data.build_id)
        if len(self.handled) >= self._want:
            self.seen.set()


async def _run_until(consumer: EventConsumer[Any], done: Any) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done(), 60)
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 30)


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


def _consumer(
    topic: Topic[StepCompletedEvent],
    handler: Recorder,
    settings: CommonSettings,
    producer: KafkaEventProducer,
    group: str,
) -> EventConsumer[StepCompletedEvent]:
    return EventConsumer(
        ConsumerSpec(topic, group, handler),
        settings=settings,
        producer=producer,
        service="test",
        retry=HandlerRetryPolicy(
            attempts=3,
            initial_delay=0.01,
            max_delay=0.05,
            stall_initial=0.05,
            stall_max=0.2,
        ),
    )


async def _feed_and_run(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
    group: str,
    handler: Recorder,
    *,
    builds: list[str],
) -> EventConsumer[StepCompletedEvent]:
    """Publish one event per build, then consume until the handler has seen enough."""
    await ensure_topics(settings, [topic])
    for build in builds:
        await producer.publish(topic, _event(build))
    consumer = _consumer(topic, handler, settings, producer, group)
    await consumer.start()
    await _run_until(consumer, handler.seen.wait)
    return consumer


async def test_handled_events_are_committed(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """After a clean stop, a new member of the group does not see the events again."""
    first = Recorder(want=2)
    await _feed_and_run(
        topic, settings, producer, "g-commit", first, builds=["b1", "b2"]
    )
    assert first.handled == ["b1", "b2"]

    await producer.publish(topic, _event("b3"))
    second = Recorder()
    again = _consumer(topic, second, settings, producer, "g-commit")
    await again.start()
    await _run_until(again, second.seen.wait)
    assert second.handled == ["b3"]


async def test_invalid_message_goes_to_dead_letter_and_consumer_moves_on(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """A malformed message lands in <topic>.dlq with its origin; the next is handled."""
    await ensure_topics(settings, [topic])
    await producer.send_raw(
        topic.name, b'{"event_type": "step.completed"}', key=b"k1", headers=[]
    )
    await producer.publish(topic, _event("after"))
    handler = Recorder()
    consumer = _consumer(topic, handler, settings, producer, "g-dlq")
    await consumer.start()
    await _run_until(consumer, handler.seen.wait)

    assert handler.handled == ["after"]
    [dead] = await _read_all(settings.kafka_bootstrap_servers, topic.dead_letter, 1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.value == b'{"event_type": "step.completed"}'
    assert dead.key == b"k1"
    assert headers["x-original-topic"] == topic.name
    assert headers["x-original-offset"] == "0"
    assert headers["x-error-type"] == "InvalidEventError"
    assert "data: Field required" in headers["x-error-message"]
    assert headers["x-consumer-group"] == "g-dlq"


async def test_permanent_failure_is_dead_lettered_once(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """A PermanentError is not retried: one call, one dead letter, then the next."""
    handler = Recorder(fail={"bad": [PermanentError("no such pipeline")]})
    await _feed_and_run(
        topic, settings, producer, "g-perm", handler, builds=["bad", "good"]
    )

    assert handler.calls == ["bad", "good"]
    [dead] = await _read_all(settings.kafka_bootstrap_servers, topic.dead_letter, 1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["x-error-type"] == "PermanentError"
    assert headers["x-error-message"] == "no such pipeline"
    assert headers["event_type"] == "step.completed"  # original headers are kept


async def test_transient_failure_is_retried_in_place(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """Two transient failures then success: handled once, nothing dead-lettered."""
    handler = Recorder(fail={"flaky": [TransientError("503"), TransientError("503")]})
    await _feed_and_run(topic, settings, producer, "g-retry", handler, builds=["flaky"])
    assert handler.calls == ["flaky", "flaky", "flaky"]
    assert handler.handled == ["flaky"]


async def test_unexpected_exception_does_not_stop_the_partition(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """A handler bug dead-letters the event and the consumer keeps going."""
    handler = Recorder(fail={"boom": [RuntimeError("bug")]})
    await _feed_and_run(
        topic, settings, producer, "g-bug", handler, builds=["boom", "fine"]
    )
    assert handler.handled == ["fine"]
    [dead] = await _read_all(settings.kafka_bootstrap_servers, topic.dead_letter, 1)
    assert dict(dead.headers)["x-error-type"] == b"RuntimeError"


async def test_persistent_transient_failure_holds_back_instead_of_dead_lettering(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """Failing past the in-place retries seeks back and retries later; no DLQ."""
    # Three attempts in place, held back, two more, then it works.
    handler = Recorder(fail={"outage": [TransientError("redis down")] * 5}, want=2)
    consumer = await _feed_and_run(
        topic, settings, producer, "g-stall", handler, builds=["outage", "after"]
    )

    assert handler.handled == ["outage", "after"]
    assert handler.calls.count("outage") == 6
    assert consumer.stalled_since is None
    assert await _count(settings.kafka_bootstrap_servers, topic.dead_letter) == 0


async def test_null_header_values_are_tolerated(
    topic: Topic[StepCompletedEvent],
    settings: CommonSettings,
    producer: KafkaEventProducer,
) -> None:
    """A header without a value (allowed by Kafka) reaches the handler as ''."""
    await ensure_topics(settings, [topic])
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await raw.start()
    try:
        await raw.send_and_wait(
            topic.name, _event("nulls").to_bytes(), headers=[("trace", None)]
        )
    finally:
        await raw.stop()
    seen: list[Delivery] = []

    async def handler(event: StepCompletedEvent, delivery: Delivery) -> None:
        seen.append(delivery)
        done.set()

    done = asyncio.Event()
    consumer = EventConsumer(
        ConsumerSpec(topic, "g-null", handler),
        settings=settings,
        producer=producer,
        service="test",
    )
    await consumer.start()
    await _run_until(consumer, done.wait)
    assert seen[0].headers == {"trace": ""}


async def test_two_members_share_a_topic_and_commit_everything(
    settings: CommonSettings, producer: KafkaEventProducer
) -> None:
    """A member joins while another works; both commit, a third finds nothing left."""
    TOTAL = 60  # noqa: N806 - a constant of this test
    topic: Topic[StepCompletedEvent] = Topic(
        f"test.rebalance.{uuid.uuid4().hex[:8]}", StepCompletedEvent, STEP_COMPLETED.key
    )
    two = settings.model_copy(update={"kafka_topic_partitions": 2})
    await ensure_topics(two, [topic])
    # Enough work that the first member is still busy when the second one joins
    # and the group rebalances (a join takes seconds on the test broker).
    for n in range(TOTAL):
        await producer.publish(topic, _event(f"b{n}"))

    builds: set[str] = set()
    all_seen = asyncio.Event()

    class Slow(Recorder):
        async def __call__(self, event: StepCompletedEvent, delivery: Delivery) -> None:
            """Record, slowly, so the rebalance lands mid-batch."""
            await asyncio.sleep(0.1)
            await super().__call__(event, delivery)
            builds.add(event.data.build_id)
            if len(builds) == TOTAL:
                all_seen.set()

    first, second = Slow(), Slow()
    a = _consumer(topic, first, settings, producer, "g-rebalance")
    b = _consumer(topic, second, settings, producer, "g-rebalance")
    await a.start()
    task_a = asyncio.create_task(a.run())
    await asyncio.sleep(3)
    await b.start()
    task_b = asyncio.create_task(b.run())
    async with asyncio.timeout(90):
        await all_seen.wait()
    a.request_stop()
    b.request_stop()
    await asyncio.gather(task_a, task_b)
    assert first.handled  # both members worked: the rebalance came mid-stream
    assert second.handled

    third = Recorder()
    late = _consumer(topic, third, settings, producer, "g-rebalance")
    await late.start()
    task = asyncio.create_task(late.run())
    await asyncio.sleep(8)  # time to join and fetch whatever was left uncommitted
    late.request_stop()
    await task
    assert third.calls == []


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=1500)
    finally:
        await consumer.stop()
    return sum(len(records) for records in batches.values())


class _FakeClient:
    """Just enough of AIOKafkaConsumer for the commit bookkeeping."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now."""
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Refuse partitions not owned, as aiokafka does."""
        if set(offsets) - self.assigned:
            raise IllegalStateError("partition not assigned")
        self.commits.append(offsets)


@pytest.mark.unit
async def test_commits_name_only_partitions_still_owned() -> None:
    """Offsets of a partition that moved are dropped, not retried forever."""
    kept, moved = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = EventConsumer(
        ConsumerSpec(STEP_COMPLETED, "g", Recorder()),
        settings=CommonSettings(),
        producer=RecordingProducer(),
        service="test",
    )
    await consumer._consumer.stop()  # the real client is never started here
    fake = _FakeClient({kept})
    consumer._consumer = fake
    consumer._done = {kept: 7, moved: 12}

    await consumer._commit_done()
    consumer._done = {kept: 9}
    await consumer._commit_done()

    assert fake.commits == [{kept: 7}, {kept: 9}]

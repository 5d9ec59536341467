"""The consumer loop every service shares: at-least-once, dead letters, drain.

Guarantees, in the order a message meets them:

* Offsets are committed by hand, only after the handler returned or the message
  went to the dead-letter topic and the broker acknowledged that. Auto-commit is
  never enabled. A crash between work and commit redelivers; handlers are
  idempotent (see :data:`regflow.kafka.delivery.Handler`).
* Only partitions this member still owns are processed and committed: after a
  rebalance, what was in hand for a partition that moved is left to its new
  owner, which reads it from the last committed offset.
* A message that does not decode or validate, or whose handler fails for good
  (PermanentError, or an unexpected exception: a bug), goes to ``<topic>.dlq``
  with its original key, value and headers plus headers saying where it came
  from and why. The partition then moves on.
* A transient failure (TransientError) is retried in place with exponential
  backoff and jitter; if it persists, the consumer seeks back to the message and
  waits with a growing pause before trying again. It is never dead-lettered: a
  dependency outage stalls the partition (readiness turns false) instead of
  emptying the topic into the dead-letter topic.
* If the dead-letter topic itself cannot be written, the consumer likewise seeks
  back and tries again later: nothing is dropped silently.
* :meth:`EventConsumer.request_stop` (SIGTERM) lets the message in hand finish,
  commits what is done and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from regflow.errors import InvalidEventError, PermanentError, TransientError
from regflow.events.envelope import Envelope
from regflow.kafka.delivery import ConsumerSpec, Delivery
from regflow.kafka.producer import EventProducer, Headers
from regflow.metrics import DeadLetterMetrics
from regflow.settings import CommonSettings

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Envelope[Any])

# Error texts in headers are cut here; the full traceback is in the log.
_MAX_ERROR_HEADER = 1000


class HandlerRetryPolicy:
    """How a transient handler failure is retried, in place and then by stalling.

    ``attempts`` tries with exponential backoff from ``initial_delay`` up to
    ``max_delay`` happen while the message is in hand; after that the consumer
    seeks back and pauses ``stall_initial`` seconds, doubling up to
    ``stall_max`` while the failure persists.
    """

    def __init__(
        self,
        attempts: int = 5,
        initial_delay: float = 0.2,
        max_delay: float = 5.0,
        stall_initial: float = 1.0,
        stall_max: float = 30.0,
    ) -> None:
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.stall_initial = stall_initial
        self.stall_max = stall_max

    def retrying(self) -> AsyncRetrying:
        """A fresh tenacity controller for one message."""
        return AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.initial_delay,
                max=self.max_delay,
                jitter=self.initial_delay,
            ),
            reraise=True,
        )

    def stall(self, previous: float) -> float:
        """The next pause after ``previous`` (0: the first stall)."""
        if previous <= 0:
            return self.stall_initial
        return min(previous * 2, self.stall_max)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is done before partitions move to another member."""

    def __init__(self, owner: EventConsumer[Any]) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Still the owner during this callback: commit, then forget the moved
        # partitions so no later commit names them.
        self._owner.joined = False
        await self._owner._commit_done()  # noqa: SLF001 - the listener is part of it
        self._owner._forget(revoked)  # noqa: SLF001
        log.info("partitions revoked", partitions=_names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Also with an empty assignment: the member joined, it just has nothing
        # to read while the group has more members than partitions.
        self._owner.joined = True
        log.info("partitions assigned", partitions=_names(assigned))


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class EventConsumer(Generic[E]):
    """Runs one :class:`ConsumerSpec` against Kafka until asked to stop."""

    def __init__(
        self,
        spec: ConsumerSpec[E],
        *,
        settings: CommonSettings,
        producer: EventProducer,
        dead_letters: DeadLetterMetrics | None = None,
        service: str,
        retry: HandlerRetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self._settings = settings
        self._producer = producer
        self._dead_letters = dead_letters
        self._service = service
        self._retry = retry or HandlerRetryPolicy()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=spec.group_id,
            client_id=f"{service}-{spec.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=spec.max_poll_interval_ms,
        )
        self._stopping = asyncio.Event()
        # Next offset to commit per partition: processed but not yet committed.
        self._done: dict[TopicPartition, int] = {}
        self._stall = 0.0
        # Time of the last poll or handled message: what liveness looks at.
        self.last_progress = time.monotonic()
        self.started = False
        # True while the group has given this member its (possibly empty) share.
        self.joined = False
        # Set while a transient failure holds a partition back.
        self.stalled_since: float | None = None

    async def start(self) -> None:
        """Join the group; raises TransientError when the broker cannot be reached."""
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise TransientError(f"consumer could not start: {exc}") from exc
        self._consumer.subscribe([self.spec.topic.name], listener=_Rebalance(self))
        self.started = True
        log.info(
            "consumer started", topic=self.spec.topic.name, group=self.spec.group_id
        )

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the message in hand; safe from any task."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll, process and commit until :meth:`request_stop`; then commit and leave.

        Blocks for the life of the consumer. Raises only on errors of the runtime
        itself; handler errors never escape.
        """
        try:
            while not self._stopping.is_set():
                self.last_progress = time.monotonic()
                batches = await self._consumer.getmany(
                    timeout_ms=500, max_records=self.spec.max_batch
                )
                for tp, records in batches.items():
                    await self._process_partition(tp, records)
                    if self._stopping.is_set():
                        break
                await self._commit_done()
        finally:
            await self._commit_done()
            await self._consumer.stop()
            log.info("consumer stopped", topic=self.spec.topic.name)

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        for record in records:
            if self._stopping.is_set() or tp not in self._consumer.assignment():
                # Stopping, or the partition moved in a rebalance while we worked:
                # the rest is redelivered from the last commit.
                return
            delivered = await self._process(record)
            self.last_progress = time.monotonic()
            if not delivered:
                await self._hold_back(tp, record.offset)
                return
            self._stall = 0.0
            self.stalled_since = None
            self._done[tp] = record.offset + 1

    async def _hold_back(self, tp: TopicPartition, offset: int) -> None:
        """Seek back to ``offset`` and pause before it is tried again."""
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, offset)
        self._stall = self._retry.stall(self._stall)
        if self.stalled_since is None:
            self.stalled_since = time.monotonic()
        log.warning("partition held back", partition=tp.partition, retry_in=self._stall)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=self._stall)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Handle one record; False if it is to be tried again later."""
        with structlog.contextvars.bound_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset
        ):
            try:
                delivery = _delivery(record)
                event = self._decode(record)
            except InvalidEventError as exc:
                log.warning("invalid event", reason=exc.reason)
                return await self._dead_letter(record, exc)
            with structlog.contextvars.bound_contextvars(
                event_id=str(event.event_id),
                event_type=event.event_type,
                account_id=event.account_id,
                correlation_id=event.correlation_id,
            ):
                return await self._handle(record, event, delivery)

    async def _handle(
        self, record: ConsumerRecord[bytes, bytes], event: E, delivery: Delivery
    ) -> bool:
        try:
            async for attempt in self._retry.retrying():
                with attempt:
                    await self.spec.handler(event, delivery)
        except PermanentError as exc:
            log.warning("event rejected", error=str(exc))
            return await self._dead_letter(record, exc)
        except TransientError as exc:
            log.warning("event failed transiently; holding back", error=str(exc))
            return False
        except Exception as exc:
            log.exception("handler raised unexpectedly")
            return await self._dead_letter(record, exc)
        log.debug("event handled")
        return True

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> E:
        if record.value is None:
            raise InvalidEventError("empty message value")
        try:
            return self.spec.topic.decode(record.value)
        except ValidationError as exc:
            raise InvalidEventError(_summarise(exc)) from exc

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: Exception
    ) -> bool:
        reason = error.reason if isinstance(error, InvalidEventError) else str(error)
        headers: Headers = [
            *((key, value) for key, value in record.headers if value is not None),
            ("x-original-topic", record.topic.encode()),
            ("x-original-partition", str(record.partition).encode()),
            ("x-original-offset", str(record.offset).encode()),
            ("x-consumer-group", self.spec.group_id.encode()),
            ("x-service", self._service.encode()),
            ("x-error-type", type(error).__name__.encode()),
            ("x-error-message", reason[:_MAX_ERROR_HEADER].encode()),
            ("x-failed-at", datetime.now(UTC).isoformat().encode()),
        ]
        try:
            await self._producer.send_raw(
                self.spec.topic.dead_letter,
                record.value,
                key=record.key,
                headers=headers,
            )
        except TransientError:
            log.exception("dead-letter topic unavailable; will redeliver")
            return False
        log.info("message dead-lettered", dead_letter_topic=self.spec.topic.dead_letter)
        if self._dead_letters is not None:
            try:
                await self._dead_letters.record(record.topic)
            except RedisError:
                # The message is safe in the dead-letter topic; only the count is lost.
                log.warning("dead-letter count not recorded", exc_info=True)
        return True

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._done.pop(tp, None)

    async def _commit_done(self) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: n for tp, n in self._done.items() if tp in assigned}
        self._done = {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced under us; those messages will be redelivered to
            # whoever owns the partitions now, and handlers are idempotent.
            log.warning(
                "commit failed after rebalance", partitions=_names(set(offsets))
            )
        except KafkaError:
            log.exception("commit failed")
            # Keep the offsets so a later commit covers them.
            for tp, offset in offsets.items():
                self._done.setdefault(tp, offset)


def _delivery(record: ConsumerRecord[bytes, bytes]) -> Delivery:
    """Where ``record`` came from; raises InvalidEventError for unreadable parts."""
    try:
        return Delivery(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode() if record.key is not None else None,
            headers={
                key: value.decode() if value is not None else ""
                for key, value in record.headers
            },
        )
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"key or header is not UTF-8: {exc}") from exc


def _summarise(exc: ValidationError) -> str:
    """One line naming each field at fault, e.g. ``data.build_id: Field required``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)

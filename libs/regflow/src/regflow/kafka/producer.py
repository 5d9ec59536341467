"""Publishing events: the seam, the Kafka implementation and a recording fake."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from regflow.errors import TransientError
from regflow.events.envelope import Envelope
from regflow.events.topics import Topic
from regflow.settings import CommonSettings

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Envelope[Any])
Headers = list[tuple[str, bytes]]


def event_headers(event: Envelope[Any]) -> Headers:
    """Envelope attributes repeated as headers, for tools that do not parse JSON."""
    return [
        ("event_type", event.event_type.encode()),
        ("event_id", str(event.event_id).encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("correlation_id", event.correlation_id.encode()),
        ("producer", event.producer.encode()),
    ]


class EventProducer(Protocol):
    """Sends events to their topics."""

    async def publish(self, topic: Topic[E], event: E) -> None:
        """Send ``event`` keyed by the topic's partition key; wait for the broker.

        Returns once the broker acknowledged the write (``acks=all``), so a caller
        may commit its input afterwards. Raises TransientError when the broker
        could not take it; nothing is then known to be written.
        """
        ...

    async def send_raw(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers
    ) -> None:
        """Send bytes as they are (dead letters); same guarantees as publish."""
        ...


class KafkaEventProducer:
    """EventProducer on aiokafka."""

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_idempotent_producer,
            linger_ms=5,
            request_timeout_ms=15_000,
        )

    async def start(self) -> None:
        """Connect to the cluster; raises TransientError when it cannot."""
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise TransientError(f"Kafka producer could not start: {exc}") from exc

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self._producer.stop()

    async def publish(self, topic: Topic[E], event: E) -> None:
        """See :meth:`EventProducer.publish`."""
        await self.send_raw(
            topic.name,
            event.to_bytes(),
            key=topic.key(event).encode(),
            headers=event_headers(event),
        )
        log.debug(
            "event published",
            topic=topic.name,
            event_type=event.event_type,
            event_id=str(event.event_id),
        )

    async def send_raw(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers
    ) -> None:
        """See :meth:`EventProducer.send_raw`."""
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as exc:
            raise TransientError(f"could not publish to {topic}: {exc}") from exc


class RecordingProducer:
    """EventProducer fake for unit tests: keeps what was sent, in order."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope[Any]]] = []
        self.raw: list[tuple[str, bytes | None, bytes | None, Headers]] = []

    async def publish(self, topic: Topic[E], event: E) -> None:
        """Record the event under its topic name."""
        self.published.append((topic.name, event))

    async def send_raw(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers
    ) -> None:
        """Record the raw message."""
        self.raw.append((topic, value, key, headers))

    def events(self, topic: Topic[E]) -> list[E]:
        """The events published to ``topic``."""
        return [e for name, e in self.published if name == topic.name]  # type: ignore[misc]

"""Settings the consumer refuses to leave to library defaults."""

import pytest

from regflow.events import STEP_COMPLETED
from regflow.kafka import ConsumerSpec, EventConsumer, RecordingProducer
from regflow.settings import CommonSettings

pytestmark = pytest.mark.unit


async def _ignore(*_: object) -> None:
    """A handler that does nothing."""


async def test_offsets_are_never_auto_committed() -> None:
    """The aiokafka consumer is built with auto-commit off and reads from the start."""
    consumer = EventConsumer(
        ConsumerSpec(STEP_COMPLETED, "g", _ignore),
        settings=CommonSettings(),
        producer=RecordingProducer(),
        service="test",
    )
    client = consumer._consumer
    try:
        assert client._enable_auto_commit is False
        assert client._auto_offset_reset == "earliest"
        assert consumer.joined is False  # ready only once the group assigned it
    finally:
        await client.stop()  # never started; releases its client

"""Service contexts for tests that wire a service without running its lifespan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from regflow.kafka import RecordingProducer
from regflow.redis import RedisKeys
from regflow.service import ServiceContext
from regflow.settings import CommonSettings

if TYPE_CHECKING:
    import redis.asyncio


def recording_context(
    name: str, redis_client: redis.asyncio.Redis, prefix: str
) -> ServiceContext:
    """The context of service ``name`` on the test's Redis prefix.

    Default settings; a :class:`RecordingProducer` in place of Kafka.
    """
    return ServiceContext(
        name=name,
        settings=CommonSettings(),
        redis=redis_client,
        producer=RecordingProducer(),
        keys=RedisKeys(prefix),
    )

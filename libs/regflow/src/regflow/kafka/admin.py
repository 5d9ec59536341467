"""Creating the topics a service needs when they are missing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from regflow.errors import TransientError
from regflow.events.topics import Topic
from regflow.settings import CommonSettings

log = structlog.get_logger(__name__)


async def ensure_topics(settings: CommonSettings, topics: Iterable[Topic[Any]]) -> None:
    """Create each topic and its dead-letter topic unless it exists.

    Called at start-up by every service; safe when several services race to
    create the same topic. Raises TransientError when the cluster cannot be asked.
    """
    wanted = sorted({name for t in topics for name in (t.name, t.dead_letter)})
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="regflow-admin",
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            try:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            name=name,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                        )
                        for name in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another service created it between our list and create
            else:
                _raise_for_topic_errors(response)
            log.info("topics created", topics=missing)
    except KafkaError as exc:
        raise TransientError(f"could not ensure topics: {exc}") from exc
    finally:
        await admin.close()


# Kafka's error code for "topic already exists": a race we lose gracefully.
_TOPIC_ALREADY_EXISTS = 36


def _raise_for_topic_errors(response: Any) -> None:
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            detail = entry[2] if len(entry) > 2 else ""  # noqa: PLR2004 - v0 has no message
            raise TransientError(f"could not create topic {name}: code {code} {detail}")

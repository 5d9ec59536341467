"""What a handler knows about the message it is given, and the handler contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from regflow.events.envelope import Envelope
from regflow.events.topics import Topic

E = TypeVar("E", bound=Envelope[Any])


@dataclass(frozen=True)
class Delivery:
    """Where a consumed message came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[E, Delivery], Awaitable[None]]
"""Processes one event.

Called once per decoded, valid event, in partition order, never concurrently for
one partition. The offset is committed after it returns, so it must be idempotent:
delivery is at-least-once. It may block on I/O for as long as the work takes, but
should stay well under the consumer's poll interval (minutes). Raising
:class:`~regflow.errors.PermanentError` dead-letters the message with the reason;
:class:`~regflow.errors.TransientError` is retried with backoff and then
dead-lettered; anything else is a bug and is dead-lettered too, so one bad message
never stops the partition.
"""


@dataclass(frozen=True)
class ConsumerSpec(Generic[E]):
    """One subscription of a service: a topic, its consumer group, its handler."""

    topic: Topic[E]
    group_id: str
    handler: Handler[E]

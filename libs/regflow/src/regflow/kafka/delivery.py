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

Called once per decoded, valid event, in partition order. The offset is committed
after it returns, so it must be idempotent: delivery is at-least-once, and after a
rebalance the new owner of a partition may redeliver a message the old owner is
still finishing. It may block on I/O for as long as the work takes; a whole batch
(``ConsumerSpec.max_batch`` messages) must stay under the spec's
``max_poll_interval_ms``. Raising :class:`~regflow.errors.PermanentError`
dead-letters the message with the reason; :class:`~regflow.errors.TransientError`
is retried with backoff, then the partition is held back and the message tried
again later (never dead-lettered); anything else is a bug and is dead-lettered, so
one bad message never stops the partition.
"""


@dataclass(frozen=True)
class ConsumerSpec(Generic[E]):
    """One subscription of a service: a topic, its consumer group, its handler.

    ``max_batch`` messages are fetched at once and handled one after the other;
    slow handlers (pushes) want a small batch and a long ``max_poll_interval_ms``
    (the time a batch may take before the member is considered gone).
    """

    topic: Topic[E]
    group_id: str
    handler: Handler[E]
    max_batch: int = 100
    max_poll_interval_ms: int = 300_000

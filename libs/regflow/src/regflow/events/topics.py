"""Every topic regflow reads or writes, its event model and its partition key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from regflow.events.envelope import Envelope
from regflow.events.pushes import PushCommandEvent, PushResultEvent
from regflow.events.registries import RegistryChangedEvent
from regflow.events.steps import StepCompletedEvent

E = TypeVar("E", bound=Envelope[Any])

DEAD_LETTER_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic(Generic[E]):
    """A topic bound to the one event model it carries.

    ``key`` picks the partition key: events that must stay in order share it.
    """

    name: str
    event: type[E]
    key: Callable[[E], str]

    @property
    def dead_letter(self) -> str:
        """The topic where undecodable or unprocessable messages of this one go."""
        return self.name + DEAD_LETTER_SUFFIX

    def decode(self, raw: bytes) -> E:
        """Parse and validate one message value (raises pydantic.ValidationError)."""
        return self.event.model_validate_json(raw)


# Keyed by account: an account's changes apply in the order they were made.
REGISTRY_CHANGES: Topic[RegistryChangedEvent] = Topic(
    "regflow.registry-changes", RegistryChangedEvent, lambda e: e.account_id
)
# Keyed by build: the steps of one build are seen in order.
STEP_COMPLETED: Topic[StepCompletedEvent] = Topic(
    "platform.step-completed",
    StepCompletedEvent,
    lambda e: f"{e.account_id}/{e.data.build_id}",
)
# Keyed by destination repository: two pushes to the same tags never race.
PUSH_COMMANDS: Topic[PushCommandEvent] = Topic(
    "regflow.push-commands",
    PushCommandEvent,
    lambda e: (
        f"{e.account_id}/{e.data.destination.registry}/{e.data.destination.repository}"
    ),
)
# Keyed by build, like the steps that caused them.
PUSH_RESULTS: Topic[PushResultEvent] = Topic(
    "regflow.push-results",
    PushResultEvent,
    lambda e: f"{e.account_id}/{e.data.build.build_id}",
)

ALL_TOPICS: tuple[Topic[Any], ...] = (
    REGISTRY_CHANGES,
    STEP_COMPLETED,
    PUSH_COMMANDS,
    PUSH_RESULTS,
)

"""Event contracts: the envelope, every payload model, and the topics."""

from regflow.events.common import BuildContext, ImageRef, Provider
from regflow.events.envelope import Envelope
from regflow.events.pushes import (
    Destination,
    FailureReason,
    PushCommand,
    PushCommandEvent,
    PushFailed,
    PushResult,
    PushResultEvent,
    PushSucceeded,
)
from regflow.events.registries import RegistryChange, RegistryChangedEvent, RegistryView
from regflow.events.steps import PushFields, StepCompleted, StepCompletedEvent
from regflow.events.topics import (
    ALL_TOPICS,
    PUSH_COMMANDS,
    PUSH_RESULTS,
    REGISTRY_CHANGES,
    STEP_COMPLETED,
    Topic,
)

__all__ = [
    "ALL_TOPICS",
    "PUSH_COMMANDS",
    "PUSH_RESULTS",
    "REGISTRY_CHANGES",
    "STEP_COMPLETED",
    "BuildContext",
    "Destination",
    "Envelope",
    "FailureReason",
    "ImageRef",
    "Provider",
    "PushCommand",
    "PushCommandEvent",
    "PushFailed",
    "PushFields",
    "PushResult",
    "PushResultEvent",
    "PushSucceeded",
    "RegistryChange",
    "RegistryChangedEvent",
    "RegistryView",
    "StepCompleted",
    "StepCompletedEvent",
    "Topic",
]

"""Payloads of the push-commands and push-results topics."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from regflow.events.common import (
    BuildContext,
    Digest,
    FrozenModel,
    ImageRef,
    Provider,
    Repository,
    Tag,
)
from regflow.events.envelope import Envelope


class Destination(FrozenModel):
    """Where a push goes: a connected registry, a repository in it, and tags."""

    registry: str = Field(description="Name of the registry integration")
    provider: Provider
    domain: str
    repository: Repository = Field(description="Repository prefix and image name")
    tags: list[Tag] = Field(min_length=1)

    @property
    def references(self) -> list[str]:
        """``domain/repository:tag`` for every tag."""
        return [f"{self.domain}/{self.repository}:{tag}" for tag in self.tags]


class PushCommand(FrozenModel):
    """Copy one image from the internal registry to one destination."""

    push_id: str = Field(min_length=1, description="Stable across redeliveries")
    build: BuildContext
    source: ImageRef
    destination: Destination


class PushCommandEvent(Envelope[PushCommand]):
    """The resolver asks the pusher to perform a push."""

    event_type: Literal["push.requested"] = "push.requested"
    schema_version: Literal[1] = 1


class FailureReason(StrEnum):
    """Why a push failed, in classes an operator can act on."""

    AUTH = "auth"  # credentials rejected or missing permission
    NOT_FOUND = "not_found"  # source image or destination repository missing
    INVALID_NAME = "invalid_name"  # the registry refused the name or tag
    REGISTRY_ERROR = "registry_error"  # the registry answered with an error
    NETWORK = "network"  # the registry could not be reached
    UNRESOLVED = "unresolved"  # the step could not be turned into a push
    INTERNAL = "internal"  # regflow itself failed (a bug); its logs say more


class PushSucceeded(FrozenModel):
    """The image is at the destination under every tag."""

    status: Literal["succeeded"] = "succeeded"
    digest: Digest
    media_type: str
    references: list[str]
    platforms: list[str] = Field(default_factory=list)
    layers: list[Digest] = Field(default_factory=list)
    bytes_moved: int = Field(ge=0, description="Blob bytes uploaded (skipped excluded)")
    blobs_copied: int = Field(ge=0)
    blobs_skipped: int = Field(ge=0)
    blobs_mounted: int = Field(
        default=0, ge=0, description="Blobs linked from another repository, not sent"
    )
    duration_seconds: float = Field(ge=0)


class PushFailed(FrozenModel):
    """The push did not happen, or not completely, and why."""

    status: Literal["failed"] = "failed"
    reason: FailureReason
    message: str
    registry_message: str | None = Field(
        default=None, description="The registry's own error text, when it gave one"
    )
    status_code: int | None = None
    duration_seconds: float = Field(default=0.0, ge=0)


PushOutcome = Annotated[PushSucceeded | PushFailed, Field(discriminator="status")]


class PushResult(FrozenModel):
    """What became of one push command, or of a step that could not be resolved."""

    push_id: str
    build: BuildContext
    source: ImageRef
    destination: Destination | None = Field(
        default=None, description="Absent when the step could not be resolved"
    )
    registry: str | None = Field(
        default=None, description="Registry integration name, when one was named"
    )
    outcome: PushOutcome


class PushResultEvent(Envelope[PushResult]):
    """The outcome of a push (or of resolving one)."""

    event_type: Literal["push.completed"] = "push.completed"
    schema_version: Literal[1] = 1

"""The envelope every regflow event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

PayloadT = TypeVar("PayloadT", bound=BaseModel)


class Envelope(BaseModel, Generic[PayloadT]):
    """Identity, origin and time of one event, around its typed payload.

    Consumers are tolerant readers (unknown fields are ignored); producers build
    envelopes through :meth:`new`, which fills the id and the time. Subclasses pin
    ``event_type`` and ``schema_version`` to literals, so a message of another
    type or version fails validation instead of being misread.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, description="Service that produced the event")
    account_id: str = Field(min_length=1, max_length=128)
    correlation_id: str = Field(
        min_length=1, description="Shared by every event caused by one build step"
    )
    causation_id: uuid.UUID | None = Field(
        default=None, description="event_id of the event that caused this one"
    )
    data: PayloadT

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def new(
        cls,
        *,
        producer: str,
        account_id: str,
        data: PayloadT,
        correlation_id: str | None = None,
        causation: Envelope[Any] | None = None,
    ) -> Self:
        """Build a fresh event; correlation flows on from ``causation`` if given."""
        event_id = uuid.uuid4()
        if correlation_id is None:
            correlation_id = (
                causation.correlation_id if causation is not None else str(event_id)
            )
        return cls(
            event_id=event_id,
            event_type=cls.model_fields["event_type"].default,
            schema_version=cls.model_fields["schema_version"].default,
            occurred_at=datetime.now(UTC),
            producer=producer,
            account_id=account_id,
            correlation_id=correlation_id,
            causation_id=causation.event_id if causation is not None else None,
            data=data,
        )

    def to_bytes(self) -> bytes:
        """The JSON wire form."""
        return self.model_dump_json().encode()

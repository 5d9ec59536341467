"""The envelope and payload models accept what they should and name what they refuse."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from regflow.events import (
    PUSH_RESULTS,
    STEP_COMPLETED,
    BuildContext,
    ImageRef,
    PushFailed,
    PushFields,
    PushResult,
    PushResultEvent,
    StepCompleted,
    StepCompletedEvent,
)
from regflow.events.common import REPOSITORY_RE, TAG_RE

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


def _step(**push: object) -> StepCompleted:
    return StepCompleted(
        pipeline_id="p",
        build_id="b1",
        step_name="build",
        step_type="build",
        status="succeeded",
        image=ImageRef(registry="internal:5000", repository="acme/web", digest=DIGEST),
        push=PushFields.model_validate(push),
        variables={"CF_BRANCH": "main"},
    )


def test_new_fills_identity_and_time() -> None:
    """new() sets a fresh id, the type and version, and a UTC time."""
    event = StepCompletedEvent.new(producer="test", account_id="acme", data=_step())
    assert event.event_type == "step.completed"
    assert event.schema_version == 1
    assert event.occurred_at.tzinfo is not None
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.correlation_id == str(event.event_id)


def test_causation_carries_correlation() -> None:
    """An event caused by another shares its correlation id and names its cause."""
    cause = StepCompletedEvent.new(producer="p", account_id="acme", data=_step())
    failed = PushResult(
        push_id="x",
        build=BuildContext(pipeline_id="p", build_id="b1", step_name="build"),
        source=cause.data.image,
        outcome=PushFailed(reason="unresolved", message="no default registry"),
    )
    effect = PushResultEvent.new(
        producer="resolver-svc", account_id="acme", data=failed, causation=cause
    )
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.event_id


def test_round_trip_through_bytes() -> None:
    """What goes on the wire decodes to an equal event."""
    event = StepCompletedEvent.new(
        producer="p", account_id="acme", data=_step(tag="v1")
    )
    assert STEP_COMPLETED.decode(event.to_bytes()) == event


def test_times_are_normalised_to_utc() -> None:
    """An offset time is stored as the same instant in UTC."""
    event = StepCompletedEvent.new(producer="p", account_id="acme", data=_step())
    shifted = event.model_copy(
        update={
            "occurred_at": datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        }
    )
    decoded = STEP_COMPLETED.decode(shifted.to_bytes())
    assert decoded.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_naive_time_is_refused() -> None:
    """A time without a zone is ambiguous and fails validation."""
    event = StepCompletedEvent.new(producer="p", account_id="acme", data=_step())
    raw = event.to_bytes().replace(b"Z", b"")
    with pytest.raises(ValidationError, match="occurred_at"):
        STEP_COMPLETED.decode(raw)


def test_other_event_type_is_refused() -> None:
    """A push result sent to the steps topic does not validate as a step."""
    cause = StepCompletedEvent.new(producer="p", account_id="acme", data=_step())
    result = PushResultEvent.new(
        producer="x",
        account_id="acme",
        data=PushResult(
            push_id="x",
            build=BuildContext(pipeline_id="p", build_id="b", step_name="s"),
            source=cause.data.image,
            outcome=PushFailed(reason="network", message="down"),
        ),
    )
    with pytest.raises(ValidationError, match="event_type"):
        STEP_COMPLETED.decode(result.to_bytes())
    assert PUSH_RESULTS.decode(result.to_bytes()) == result


def test_tag_and_tags_are_exclusive() -> None:
    """A step gives a tag or tags, never both, and tags is not empty."""
    with pytest.raises(ValidationError, match="either tag or tags"):
        PushFields(tag="a", tags=["b"])
    with pytest.raises(ValidationError, match="must not be empty"):
        PushFields(tags=[])


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, ""]
)
def test_bad_digests_are_refused(digest: str) -> None:
    """Only well-formed sha256/sha512 digests pass."""
    with pytest.raises(ValidationError, match="digest"):
        ImageRef(registry="r", repository="a/b", digest=digest)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("web", True),
        ("acme/web-app", True),
        ("a/b__c/d.e", True),
        ("Acme/web", False),
        ("a//b", False),
        ("-a", False),
        ("a/", False),
    ],
)
def test_repository_grammar(name: str, ok: bool) -> None:
    """Repository names follow the distribution spec's grammar."""
    assert bool(REPOSITORY_RE.match(name)) is ok


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("latest", True),
        ("v1.2.3", True),
        ("_x", True),
        (".x", False),
        ("-x", False),
        ("a" * 128, True),
        ("a" * 129, False),
        ("feature/x", False),
    ],
)
def test_tag_grammar(tag: str, ok: bool) -> None:
    """Tags follow Docker's tag grammar."""
    assert bool(TAG_RE.match(tag)) is ok


def test_unknown_fields_are_ignored() -> None:
    """Consumers are tolerant readers: a new optional field does not break them."""
    event = StepCompletedEvent.new(producer="p", account_id="acme", data=_step())
    raw = event.to_bytes().replace(b'"producer"', b'"future_field":1,"producer"', 1)
    assert STEP_COMPLETED.decode(raw).event_id == event.event_id
    assert isinstance(event.event_id, uuid.UUID)

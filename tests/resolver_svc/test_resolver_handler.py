"""The resolver's handlers against real Redis, publishing to a recording producer."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
import structlog

from regflow.events import (
    PUSH_COMMANDS,
    PUSH_RESULTS,
    REGISTRY_CHANGES,
    STEP_COMPLETED,
    FailureReason,
    ImageRef,
    Provider,
    PushFailed,
    PushFields,
    RegistryChange,
    RegistryChangedEvent,
    RegistryView,
    StepCompleted,
    StepCompletedEvent,
)
from regflow.kafka import Delivery, RecordingProducer
from regflow.metrics import UNRESOLVED_REGISTRY, PushMetrics
from regflow.redis import RedisKeys
from resolver_svc.app import consumer_specs
from resolver_svc.handler import ResolverHandlers
from resolver_svc.registries import RegistryViewStore
from resolver_svc.settings import ResolverSettings
from tests.support.service import recording_context

pytestmark = pytest.mark.integration

ACCOUNT = "acct-h"
DIGEST = "sha256:" + "cd" * 32
DELIVERY = Delivery(topic="t", partition=0, offset=7, key=None)


class Harness:
    """Handlers wired to the test's Redis and a recording producer."""

    def __init__(self, redis_client: redis.asyncio.Redis, prefix: str) -> None:
        self.redis = redis_client
        self.keys = RedisKeys(prefix)
        self.producer = RecordingProducer()
        self.metrics = PushMetrics(redis_client, self.keys)
        self.handlers = ResolverHandlers(
            registries=RegistryViewStore(redis_client, self.keys),
            producer=self.producer,
            metrics=self.metrics,
        )

    def patient(self, grace_seconds: float) -> ResolverHandlers:
        """Other handlers on the same Redis and producer, with a registry grace."""
        return ResolverHandlers(
            registries=RegistryViewStore(self.redis, self.keys),
            producer=self.producer,
            registry_grace_seconds=grace_seconds,
        )

    async def connect(
        self,
        name: str,
        version: int,
        *,
        default: str | None,
        applied_at: datetime | None = None,
    ) -> None:
        """Deliver a 'created' registry change (as if applied at ``applied_at``)."""
        event = RegistryChangedEvent.new(
            producer="config-svc",
            account_id=ACCOUNT,
            data=RegistryChange(
                change="created",
                version=version,
                registry=RegistryView(
                    name=name, provider=Provider.OTHER, domain=f"{name}.example.com"
                ),
                default_registry=default,
            ),
        )
        handlers = self.handlers
        if applied_at is not None:
            handlers = ResolverHandlers(
                registries=RegistryViewStore(
                    self.redis, self.keys, clock=lambda: applied_at
                ),
                producer=self.producer,
            )
        await handlers.registry_changed(event, DELIVERY)

    async def counter_keys(self) -> set[str]:
        """Every push-counter key under the test's prefix, without the prefix."""
        prefix = self.keys.key("metrics", "pushes", "")
        return {
            key.decode().removeprefix(prefix)
            async for key in self.redis.scan_iter(match=prefix + "*")
        }


def step_event(**push: object) -> StepCompletedEvent:
    """A succeeded push step event."""
    return StepCompletedEvent.new(
        producer="platform",
        account_id=ACCOUNT,
        correlation_id="corr-1",
        data=StepCompleted(
            pipeline_id="p",
            build_id="b-9",
            step_name="push",
            step_type="push",
            status="succeeded",
            image=ImageRef(
                registry="internal:5000", repository="team/app", digest=DIGEST
            ),
            push=PushFields.model_validate(push),
            variables={"CF_BRANCH": "main"},
        ),
    )


@pytest.fixture
def harness(redis_client: redis.asyncio.Redis, redis_prefix: str) -> Harness:
    """A fresh harness per test."""
    return Harness(redis_client, redis_prefix)


async def test_step_becomes_push_command_with_lineage(harness: Harness) -> None:
    """The command carries the step's correlation, causation and account."""
    await harness.connect("harbor", 1, default="harbor")
    event = step_event(tags=["1.0", "latest"])
    await harness.handlers.step_completed(event, DELIVERY)

    [command] = harness.producer.events(PUSH_COMMANDS)
    assert harness.producer.events(PUSH_RESULTS) == []
    assert command.account_id == ACCOUNT
    assert command.correlation_id == "corr-1"
    assert command.causation_id == event.event_id
    assert command.producer == "resolver-svc"
    assert command.data.destination.references == [
        "harbor.example.com/team/app:1.0",
        "harbor.example.com/team/app:latest",
    ]
    assert PUSH_COMMANDS.key(command) == f"{ACCOUNT}/harbor/team/app"


async def test_redelivered_step_gives_same_push_id(harness: Harness) -> None:
    """Handling the same event twice publishes the same push id twice."""
    await harness.connect("harbor", 1, default="harbor")
    event = step_event()
    await harness.handlers.step_completed(event, DELIVERY)
    await harness.handlers.step_completed(event, DELIVERY)
    first, second = harness.producer.events(PUSH_COMMANDS)
    assert first.data.push_id == second.data.push_id
    assert first.event_id != second.event_id


async def test_unknown_registry_becomes_failed_result(harness: Harness) -> None:
    """An unresolvable step publishes a failed result and counts a failure."""
    await harness.connect("harbor", 1, default="harbor")
    event = step_event(registry="quay")
    await harness.handlers.step_completed(event, DELIVERY)

    assert harness.producer.events(PUSH_COMMANDS) == []
    [result] = harness.producer.events(PUSH_RESULTS)
    assert result.causation_id == event.event_id
    assert result.correlation_id == "corr-1"
    assert result.data.destination is None
    assert result.data.registry == "quay"
    assert result.data.outcome.status == "failed"
    assert result.data.outcome.reason is FailureReason.UNRESOLVED
    assert "quay" in result.data.outcome.message
    assert PUSH_RESULTS.key(result) == f"{ACCOUNT}/b-9"
    counts = await harness.metrics.read(ACCOUNT, UNRESOLVED_REGISTRY)
    assert counts["failed"] == 1
    # The account has no "quay": no counters are made up for it.
    assert await harness.counter_keys() == {f"{ACCOUNT}:{UNRESOLVED_REGISTRY}"}


@pytest.mark.parametrize("registry", ["${{NOPE}}", "${{CF_BRANCH}}-x", "${{"])
async def test_made_up_registry_names_make_no_counters(
    harness: Harness, registry: str
) -> None:
    """Whatever a step names (expanded or not), failures count under ``-``."""
    await harness.connect("harbor", 1, default="harbor")
    await harness.handlers.step_completed(step_event(registry=registry), DELIVERY)
    [result] = harness.producer.events(PUSH_RESULTS)
    assert result.data.outcome.status == "failed"
    assert await harness.counter_keys() == {f"{ACCOUNT}:{UNRESOLVED_REGISTRY}"}


async def test_failure_on_a_known_registry_counts_under_it(harness: Harness) -> None:
    """A bad name for one of the account's registries is that registry's failure."""
    await harness.connect("harbor", 1, default="harbor")
    await harness.handlers.step_completed(step_event(image_name="Team/App"), DELIVERY)
    [result] = harness.producer.events(PUSH_RESULTS)
    assert result.data.outcome.status == "failed"
    assert (await harness.metrics.read(ACCOUNT, "harbor"))["failed"] == 1
    assert await harness.counter_keys() == {f"{ACCOUNT}:harbor"}


async def test_redelivered_unresolved_step_counts_once(harness: Harness) -> None:
    """A step redelivered after its failure republishes it but counts it once."""
    await harness.connect("harbor", 1, default="harbor")
    event = step_event(registry="quay")
    await harness.handlers.step_completed(event, DELIVERY)
    await harness.handlers.step_completed(event, DELIVERY)

    first, second = harness.producer.events(PUSH_RESULTS)
    assert first.data.push_id == second.data.push_id
    assert (await harness.metrics.read(ACCOUNT, UNRESOLVED_REGISTRY))["failed"] == 1


async def test_registry_change_reaches_later_steps(harness: Harness) -> None:
    """A registry connected after a failure is used by the next step."""
    await harness.handlers.step_completed(step_event(), DELIVERY)
    [failed] = harness.producer.events(PUSH_RESULTS)
    assert failed.data.outcome.status == "failed"

    await harness.connect("late", 1, default="late")
    await harness.handlers.step_completed(step_event(), DELIVERY)
    [command] = harness.producer.events(PUSH_COMMANDS)
    assert command.data.destination.registry == "late"


async def test_step_waits_for_a_registry_change_in_flight(harness: Harness) -> None:
    """A step that overtakes its registry's creation is resolved once it lands."""
    patient = harness.patient(grace_seconds=10)

    async def connect_soon() -> None:
        await asyncio.sleep(0.5)
        await harness.connect("fresh", 1, default="fresh")

    await asyncio.gather(patient.step_completed(step_event(), DELIVERY), connect_soon())

    assert harness.producer.events(PUSH_RESULTS) == []
    [command] = harness.producer.events(PUSH_COMMANDS)
    assert command.data.destination.registry == "fresh"


async def test_step_waits_for_a_change_following_a_recent_one(
    harness: Harness,
) -> None:
    """A view changed a moment ago may have more changes on their way."""
    await harness.connect("first", 1, default=None)
    patient = harness.patient(grace_seconds=10)

    async def set_default_soon() -> None:
        await asyncio.sleep(0.5)
        await harness.connect("second", 2, default="second")

    await asyncio.gather(
        patient.step_completed(step_event(), DELIVERY), set_default_soon()
    )
    assert harness.producer.events(PUSH_RESULTS) == []
    [command] = harness.producer.events(PUSH_COMMANDS)
    assert command.data.destination.registry == "second"


async def test_settled_account_without_default_fails_at_once(
    harness: Harness,
) -> None:
    """No default and no recent change: nothing to wait for, even with a long grace."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await harness.connect("harbor", 1, default=None, applied_at=long_ago)
    patient = harness.patient(grace_seconds=60)
    async with asyncio.timeout(5):
        await patient.step_completed(step_event(), DELIVERY)
        await patient.step_completed(step_event(registry="quay"), DELIVERY)
    no_default, unknown = harness.producer.events(PUSH_RESULTS)
    assert isinstance(no_default.data.outcome, PushFailed)
    assert "default" in no_default.data.outcome.message
    assert isinstance(unknown.data.outcome, PushFailed)
    assert "quay" in unknown.data.outcome.message


async def test_grace_does_not_delay_other_problems(harness: Harness) -> None:
    """An undefined variable fails at once even with a long registry grace."""
    await harness.connect("harbor", 1, default="harbor")
    patient = harness.patient(grace_seconds=60)
    async with asyncio.timeout(5):
        await patient.step_completed(step_event(tag="${{NOPE}}"), DELIVERY)
    [result] = harness.producer.events(PUSH_RESULTS)
    assert isinstance(result.data.outcome, PushFailed)
    assert "NOPE" in result.data.outcome.message


async def test_failed_build_publishes_nothing(harness: Harness) -> None:
    """No command and no result for a failed step."""
    event = step_event()
    failed = event.model_copy(
        update={"data": event.data.model_copy(update={"status": "failed"})}
    )
    await harness.handlers.step_completed(failed, DELIVERY)
    assert harness.producer.published == []


async def test_version_gap_is_warned(harness: Harness) -> None:
    """Skipped versions mean lost changes: a warning says so."""
    await harness.connect("a", 1, default="a")
    with structlog.testing.capture_logs() as logs:
        await harness.connect("b", 4, default="a")
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings
    assert warnings[0]["previous_version"] == 1


async def test_consumer_specs(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """The app subscribes to both topics under the documented group ids."""
    context = recording_context("resolver-svc", redis_client, redis_prefix)
    specs = consumer_specs(ResolverSettings(), context)
    assert {(s.topic.name, s.group_id) for s in specs} == {
        (REGISTRY_CHANGES.name, "regflow-resolver-registries"),
        (STEP_COMPLETED.name, "regflow-resolver-steps"),
    }

"""cache-svc's handlers decide what is recorded (real Redis)."""

import pytest
import redis.asyncio

from cache_svc.app import consumer_specs
from cache_svc.handler import CacheHandlers
from cache_svc.records import AccountRegistryStore, CacheKeys, ImageStore
from cache_svc.selection import RecommendationReader
from cache_svc.settings import CacheSettings
from regflow.events import (
    PUSH_RESULTS,
    REGISTRY_CHANGES,
    STEP_COMPLETED,
    ImageRef,
    Provider,
    PushResultEvent,
    RegistryChange,
    RegistryChangedEvent,
    RegistryView,
    StepCompleted,
    StepCompletedEvent,
)
from regflow.kafka import Delivery
from regflow.redis import RedisKeys
from tests.support.events import pushed_result
from tests.support.service import recording_context

pytestmark = pytest.mark.integration

ACCOUNT = "acct-h"
DIGEST = "sha256:" + "12" * 32
DELIVERY = Delivery(topic="t", partition=0, offset=1, key=None)
IMAGE = ImageRef(registry="internal:5000", repository="team/app", digest=DIGEST)


def step_event(
    step_type: str = "build", status: str = "succeeded"
) -> StepCompletedEvent:
    """A step event for IMAGE on main."""
    return StepCompletedEvent.new(
        producer="platform",
        account_id=ACCOUNT,
        data=StepCompleted.model_validate(
            {
                "pipeline_id": "p",
                "build_id": "b",
                "step_name": "s",
                "step_type": step_type,
                "status": status,
                "image": IMAGE,
                "platforms": ["linux/amd64"],
                "variables": {"CF_BRANCH": "main"},
            }
        ),
    )


@pytest.fixture
def keys(redis_prefix: str) -> CacheKeys:
    """Cache keys on the test's prefix."""
    return CacheKeys(RedisKeys(redis_prefix))


@pytest.fixture
def handlers(redis_client: redis.asyncio.Redis, keys: CacheKeys) -> CacheHandlers:
    """Handlers on the test's Redis."""
    return CacheHandlers(
        images=ImageStore(redis_client, keys),
        accounts=AccountRegistryStore(redis_client, keys),
    )


async def recommended(redis_client: redis.asyncio.Redis, keys: CacheKeys) -> list[str]:
    """The references recommended for IMAGE's repository on main."""
    result = await RecommendationReader(redis_client, keys).recommend(
        account_id=ACCOUNT,
        repository="team/app",
        platform="linux/amd64",
        branch="main",
        default_branch="main",
    )
    return result.references


@pytest.mark.parametrize(
    ("step_type", "status"), [("build", "failed"), ("push", "succeeded")]
)
async def test_only_successful_builds_are_recorded(
    handlers: CacheHandlers,
    redis_client: redis.asyncio.Redis,
    keys: CacheKeys,
    step_type: str,
    status: str,
) -> None:
    """Failed builds and push steps leave nothing to recommend."""
    await handlers.step_completed(step_event(step_type, status), DELIVERY)
    assert await recommended(redis_client, keys) == []


async def test_build_push_and_caching_registry(
    handlers: CacheHandlers, redis_client: redis.asyncio.Redis, keys: CacheKeys
) -> None:
    """All three handlers feed one recommendation."""
    step = step_event()
    await handlers.step_completed(step, DELIVERY)
    assert await recommended(redis_client, keys) == [f"internal:5000/team/app@{DIGEST}"]

    for registry in ("hub", "cache"):
        result = pushed_result(
            IMAGE,
            registry=registry,
            domain=f"{registry}.example.com",
            repository="team/app",
            tags=["main"],
            push_id=registry,
        )
        await handlers.push_result(
            PushResultEvent.new(
                producer="pusher-svc", account_id=ACCOUNT, data=result, causation=step
            ),
            DELIVERY,
        )
    change = RegistryChangedEvent.new(
        producer="config-svc",
        account_id=ACCOUNT,
        data=RegistryChange(
            change="updated",
            version=1,
            registry=RegistryView(name="cache", provider=Provider.OTHER, domain="c"),
            caching_registry="cache",
        ),
    )
    await handlers.registry_changed(change, DELIVERY)
    assert await recommended(redis_client, keys) == [
        f"cache.example.com/team/app@{DIGEST}"
    ]


async def test_consumer_specs(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """The app subscribes to three topics under the documented group ids."""
    context = recording_context("cache-svc", redis_client, redis_prefix)
    specs = consumer_specs(CacheSettings(), context)
    assert {(s.topic.name, s.group_id) for s in specs} == {
        (STEP_COMPLETED.name, "regflow-cache-steps"),
        (PUSH_RESULTS.name, "regflow-cache-results"),
        (REGISTRY_CHANGES.name, "regflow-cache-registries"),
    }

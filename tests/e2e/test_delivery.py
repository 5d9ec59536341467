"""All four services as processes over a real broker, Redis and registries."""

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.images import inspect_raw
from deploy.scenario import (
    LandedImage,
    build_step_event,
    connect_registry,
    land_image,
    send_step_event,
    wait_for_recommendation,
    wait_for_results,
)
from deploy.services import Fleet
from deploy.stack import BasicAuth, Registry, forget_prefix, start_registry
from regflow.events import STEP_COMPLETED, PushFailed, PushFields, PushSucceeded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ACCOUNT = "acme"
REPOSITORY = "builds/web"


@dataclass
class World:
    """The running system and what the tests share."""

    fleet: Fleet
    bootstrap: str
    redis_url: str
    prefix: str
    internal: Registry
    external: Registry
    image: LandedImage


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> Iterator[World]:
    """Registries, the four services, an image landed and the registry connected."""
    workdir = tmp_path_factory.mktemp("e2e")
    prefix = f"regflow-e2e-{uuid.uuid4().hex[:8]}"
    internal = start_registry(workdir, "internal")
    external = start_registry(workdir, "external", auth=BasicAuth.generate("regflow"))
    env = {
        "REGFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REGFLOW_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "REGFLOW_REDIS_URL": redis_url,
        "REGFLOW_REDIS_PREFIX": prefix,
        "REGFLOW_INSECURE_REGISTRIES": f"{internal.host},{external.host}",
    }
    try:
        image = land_image(Path(workdir), internal.host, REPOSITORY)
        with Fleet(Path(workdir), env) as fleet:
            asyncio.run(connect_registry(fleet["config-svc"].url, ACCOUNT, external))
            yield World(
                fleet, kafka_bootstrap, redis_url, prefix, internal, external, image
            )
    finally:
        external.stop()
        internal.stop()
        forget_prefix(redis_url, prefix)


async def _deliver(
    world: World, event_push: PushFields, branch: str = "main"
) -> object:
    event = build_step_event(ACCOUNT, world.image, branch=branch, push=event_push)
    await send_step_event(world.bootstrap, event)
    async with asyncio.timeout(120):
        [result] = await wait_for_results(world.bootstrap, event.correlation_id)
    assert result.causation_id is not None
    return result.data.outcome


async def test_image_travels_from_build_step_to_connected_registry(
    world: World,
) -> None:
    """A build step's image lands at the default registry with its digest intact."""
    outcome = await _deliver(
        world, PushFields(image_name="web", tags=["${{CF_BRANCH_TAG_NORMALIZED}}"])
    )

    assert isinstance(outcome, PushSucceeded), outcome
    assert outcome.references == [f"{world.external.host}/acme/web:main"]
    assert outcome.digest == world.image.digest
    assert outcome.bytes_moved >= world.image.size
    creds = (world.external.username or "", world.external.password or "")
    raw = await asyncio.to_thread(
        inspect_raw, world.external.host, "acme/web", "main", creds
    )
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == world.image.digest

    counters = redis.Redis.from_url(world.redis_url).hgetall(
        f"{world.prefix}:metrics:pushes:{ACCOUNT}:production"
    )
    assert int(counters[b"succeeded"]) >= 1
    assert int(counters[b"bytes"]) >= world.image.size

    async with asyncio.timeout(30):
        advice = await wait_for_recommendation(
            world.fleet["cache-svc"].url,
            ACCOUNT,
            repository=REPOSITORY,
            platform="linux/amd64",
            branch="feature/other",
            reference_prefix=f"{world.external.host}/",
        )
    assert advice["candidates"][0]["digest"] == world.image.digest
    # Pinned by digest: the tag may already point at a newer build.
    assert advice["references"][0] == (
        f"{world.external.host}/acme/web@{world.image.digest}"
    )


async def test_unknown_registry_yields_a_failed_result_that_says_why(
    world: World,
) -> None:
    """A step naming a registry the account lacks gets an 'unresolved' result."""
    outcome = await _deliver(world, PushFields(registry="staging", tag="x"))
    assert isinstance(outcome, PushFailed)
    assert outcome.reason == "unresolved"
    assert "staging" in outcome.message


async def _dead_letters(bootstrap: str, expected: int) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(
        STEP_COMPLETED.dead_letter,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(
                        {k: v.decode() for k, v in r.headers}
                        | {"value": r.value.decode()}
                        for r in records
                    )
    finally:
        await consumer.stop()
    return found


async def test_malformed_event_is_dead_lettered_and_services_keep_working(
    world: World,
) -> None:
    """Garbage on the input topic goes to its DLQ from each consumer group."""
    marker = f"not json {uuid.uuid4()}"
    raw = AIOKafkaProducer(bootstrap_servers=world.bootstrap)
    await raw.start()
    try:
        await raw.send_and_wait(STEP_COMPLETED.name, marker.encode(), key=b"acme/x")
    finally:
        await raw.stop()

    outcome = await _deliver(world, PushFields(image_name="web", tag="after-garbage"))
    assert isinstance(outcome, PushSucceeded)

    letters = [
        d for d in await _dead_letters(world.bootstrap, 2) if d["value"] == marker
    ]
    assert {d["x-consumer-group"] for d in letters} == {
        "regflow-resolver-steps",
        "regflow-cache-steps",
    }
    assert all(d["x-error-type"] == "InvalidEventError" for d in letters)
    assert all(d["x-original-topic"] == STEP_COMPLETED.name for d in letters)


def test_services_drain_and_exit_cleanly_on_sigterm(world: World) -> None:
    """SIGTERM stops each consumer loop and the process exits with status 0."""
    services = list(world.fleet.services.values())
    world.fleet.stop()
    for service in services:
        assert service.process.returncode() == 0, service.name
        log = service.process.log_path.read_text()
        assert '"service stopped"' in log, service.name
        if service.name != "config-svc":
            assert '"consumer stopped"' in log, service.name

"""The steps of a delivery, as the platform and an operator would take them.

Shared by the demo (which narrates them) and the end-to-end test (which checks
them): build an image into the internal registry, connect a registry through
config-svc's HTTP API, emit a step-completed event, wait for the push result,
ask cache-svc what to cache from next.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from deploy.images import build_image, copy_to_registry
from deploy.stack import Registry
from regflow.events import (
    PUSH_RESULTS,
    STEP_COMPLETED,
    ImageRef,
    PushFields,
    PushResultEvent,
    StepCompleted,
    StepCompletedEvent,
)
from regflow.kafka import KafkaEventProducer
from regflow.settings import CommonSettings

PLATFORM_PRODUCER = "platform"


@dataclass(frozen=True)
class LandedImage:
    """An image as a build step leaves it in the internal registry."""

    registry: str
    repository: str
    digest: str
    size: int
    layers: int


def land_image(
    workdir: Path,
    internal_host: str,
    repository: str,
    *,
    layer_sizes: Sequence[int] = (3 * 2**20, 2 * 2**20, 2**20),
    seed: int = 0,
) -> LandedImage:
    """Build a real OCI image and copy it into the internal registry (skopeo)."""
    layout = workdir / f"image-{seed}"
    build_image(layout, "build", layer_sizes=list(layer_sizes), seed=seed)
    digest = copy_to_registry(layout, "build", internal_host, repository)
    return LandedImage(
        registry=internal_host,
        repository=repository,
        digest=digest,
        size=sum(layer_sizes),
        layers=len(layer_sizes),
    )


async def connect_registry(
    config_url: str,
    account_id: str,
    registry: Registry,
    *,
    name: str = "production",
    repository_prefix: str | None = "acme",
    default: bool = True,
) -> dict[str, Any]:
    """Add ``registry`` as an "other" registry through config-svc and test it.

    With ``default`` it becomes the account's default registry. Returns the
    test-connection answer. Raises httpx.HTTPStatusError on a refused request
    (its body names the field at fault).
    """
    base = f"{config_url}/v1/accounts/{account_id}/registries"
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            base,
            json={
                "name": name,
                "provider": "other",
                "domain": registry.host,
                "username": registry.username,
                "password": registry.password,
                "repository_prefix": repository_prefix,
            },
        )
        created.raise_for_status()
        if default:
            (await http.put(f"{base}/default", json={"name": name})).raise_for_status()
        tested = await http.post(f"{base}/{name}/test")
        tested.raise_for_status()
        answer: dict[str, Any] = tested.json()
        return answer


def build_step_event(
    account_id: str,
    image: LandedImage,
    *,
    branch: str,
    build_id: str | None = None,
    push: PushFields | None = None,
) -> StepCompletedEvent:
    """A successful build step as the platform reports it."""
    revision = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    build_id = build_id or f"b-{uuid.uuid4().hex[:8]}"
    return StepCompletedEvent.new(
        producer=PLATFORM_PRODUCER,
        account_id=account_id,
        data=StepCompleted(
            pipeline_id=f"{account_id}/web",
            build_id=build_id,
            step_name="build_web",
            step_type="build",
            status="succeeded",
            image=ImageRef(
                registry=image.registry,
                repository=image.repository,
                digest=image.digest,
            ),
            platforms=["linux/amd64"],
            push=push or PushFields(),
            variables={
                "CF_BRANCH": branch,
                "CF_REVISION": revision,
                "CF_SHORT_REVISION": revision[:7],
                "CF_BUILD_ID": build_id,
            },
        ),
    )


async def send_step_event(bootstrap: str, event: StepCompletedEvent) -> None:
    """Publish the event as the platform would (acks=all)."""
    producer = KafkaEventProducer(
        CommonSettings(
            kafka_bootstrap_servers=bootstrap, kafka_idempotent_producer=False
        ),
        client_id=PLATFORM_PRODUCER,
    )
    await producer.start()
    try:
        await producer.publish(STEP_COMPLETED, event)
    finally:
        await producer.stop()


async def wait_for_results(
    bootstrap: str, correlation_id: str, *, count: int = 1
) -> list[PushResultEvent]:
    """Read push results (without a consumer group) until ``count`` share the id.

    Waits as long as it takes: callers bound it with ``asyncio.timeout``.
    """
    consumer = AIOKafkaConsumer(
        PUSH_RESULTS.name,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[PushResultEvent] = []
    try:
        while len(found) < count:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = PUSH_RESULTS.decode(record.value)
                    if event.correlation_id == correlation_id:
                        found.append(event)
    finally:
        await consumer.stop()
    return found


async def wait_for_recommendation(
    cache_url: str,
    account_id: str,
    *,
    repository: str,
    platform: str,
    branch: str,
    default_branch: str = "main",
    reference_prefix: str = "",
) -> dict[str, Any]:
    """Ask cache-svc until it recommends a reference starting with the prefix.

    cache-svc learns asynchronously: from the step it knows the internal image,
    from the push result its pushed references. Waits as long as it takes:
    callers bound it with ``asyncio.timeout``.
    """
    url = f"{cache_url}/v1/accounts/{account_id}/cache-recommendations"
    params = {
        "repository": repository,
        "platform": platform,
        "branch": branch,
        "default_branch": default_branch,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            response = await http.get(url, params=params)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            if any(r.startswith(reference_prefix) for r in body["references"]):
                return body
            await asyncio.sleep(0.3)

"""cache-svc's Kafka handlers: record builds, pushes and caching registries."""

from __future__ import annotations

from typing import Final

import structlog

from cache_svc.records import AccountRegistryStore, ImageStore
from regflow.events import PushResultEvent, RegistryChangedEvent, StepCompletedEvent
from regflow.kafka import Delivery

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "cache-svc"


class CacheHandlers:
    """The three handlers of cache-svc; all idempotent under redelivery.

    Each writes to Redis only (one transaction per event) and publishes nothing.
    They raise TransientError when Redis is unavailable, so the consumer retries.
    """

    def __init__(self, *, images: ImageStore, accounts: AccountRegistryStore) -> None:
        self._images = images
        self._accounts = accounts

    async def step_completed(
        self, event: StepCompletedEvent, delivery: Delivery
    ) -> None:
        """Record a successful build step's image; ignore every other step."""
        step = event.data
        if step.step_type != "build" or step.status != "succeeded":
            log.debug("step not recorded", step_type=step.step_type, status=step.status)
            return
        recorded = await self._images.record_build(
            event.account_id, step, event.occurred_at
        )
        log.debug(
            "build recorded",
            repository=step.image.repository,
            digest=step.image.digest,
            branch=step.branch,
            recorded=recorded,
            offset=delivery.offset,
        )

    async def push_result(self, event: PushResultEvent, delivery: Delivery) -> None:
        """Record a successful push's references; ignore failed pushes."""
        result = event.data
        recorded = await self._images.record_push(
            event.account_id, result, event.occurred_at
        )
        log.debug(
            "push result handled",
            push_id=result.push_id,
            status=result.outcome.status,
            recorded=recorded,
            offset=delivery.offset,
        )

    async def registry_changed(
        self, event: RegistryChangedEvent, delivery: Delivery
    ) -> None:
        """Remember the account's caching registry (newest change wins)."""
        applied = await self._accounts.apply(event.account_id, event.data)
        log.debug(
            "registry change handled",
            version=event.data.version,
            caching_registry=event.data.caching_registry,
            applied=applied,
            offset=delivery.offset,
        )

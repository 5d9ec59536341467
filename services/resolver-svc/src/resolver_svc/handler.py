"""The resolver's Kafka handlers: registry changes -> view, steps -> pushes."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog

from regflow.events import (
    PUSH_COMMANDS,
    PUSH_RESULTS,
    PushCommand,
    PushCommandEvent,
    PushResultEvent,
    RegistryChangedEvent,
    StepCompletedEvent,
)
from regflow.kafka import Delivery, EventProducer
from regflow.metrics import PushMetrics
from regflow.redis import redis_errors
from resolver_svc.registries import RegistryViewStore
from resolver_svc.rules import (
    ResolutionError,
    ResolutionProblem,
    resolve_step,
    unresolved_result,
)

log = structlog.get_logger(__name__)

SERVICE_NAME: Final = "resolver-svc"

# Problems that a registry change still on its way would cure: a step that
# names a registry created a moment ago can overtake that change, because the
# two travel on different topics.
_REGISTRY_PROBLEMS: Final = frozenset(
    {ResolutionProblem.UNKNOWN_REGISTRY, ResolutionProblem.NO_DEFAULT_REGISTRY}
)
_GRACE_POLL_SECONDS: Final = 0.25


class ResolverHandlers:
    """The two handlers of the resolver; both idempotent under redelivery.

    ``registry_changed`` writes only the registry view. ``step_completed`` reads
    the view, then publishes one ``PushCommandEvent`` per destination or one
    failed ``PushResultEvent``; a redelivered step publishes the same push ids
    again, and the pusher treats a repeated push id as the same push.
    """

    def __init__(
        self,
        *,
        registries: RegistryViewStore,
        producer: EventProducer,
        metrics: PushMetrics | None = None,
        service_name: str = SERVICE_NAME,
        registry_grace_seconds: float = 0.0,
    ) -> None:
        self._registries = registries
        self._producer = producer
        self._metrics = metrics
        self._service_name = service_name
        self._registry_grace = registry_grace_seconds

    async def registry_changed(
        self, event: RegistryChangedEvent, delivery: Delivery
    ) -> None:
        """Apply one registry change to the view (ignored if already applied).

        Raises TransientError when Redis is unreachable.
        """
        change = event.data
        outcome = await self._registries.apply(event.account_id, change)
        if outcome.applied and change.version > outcome.previous_version + 1:
            # Versions grow by one per account: a gap means changes were lost
            # (retention, or a consumer started late), so the view may be stale.
            log.warning(
                "registry change versions skipped",
                previous_version=outcome.previous_version,
                version=change.version,
            )
        log.debug(
            "registry change handled",
            change=change.change,
            registry=change.registry.name,
            version=change.version,
            applied=outcome.applied,
            offset=delivery.offset,
        )

    async def _resolve(self, event: StepCompletedEvent) -> list[PushCommand]:
        """Resolve against the view; wait out a registry change still on its way.

        Registry problems are re-checked for up to ``registry_grace_seconds``,
        holding the partition that long at most; other problems fail at once.
        """
        deadline = time.monotonic() + self._registry_grace
        while True:
            registries = await self._registries.load(event.account_id)
            try:
                return resolve_step(
                    event.data, registries, step_event_id=event.event_id
                )
            except ResolutionError as exc:
                if exc.problem not in _REGISTRY_PROBLEMS or (
                    time.monotonic() >= deadline
                ):
                    raise
            await asyncio.sleep(_GRACE_POLL_SECONDS)

    async def step_completed(
        self, event: StepCompletedEvent, delivery: Delivery
    ) -> None:
        """Resolve one step and publish its push commands or its failure.

        Returns after the broker acknowledged every event. Raises TransientError
        when Redis or the broker is unavailable (the whole step is then retried;
        the push ids are the same, so nothing is pushed twice).
        """
        step = event.data
        try:
            commands = await self._resolve(event)
        except ResolutionError as exc:
            result = unresolved_result(step, exc, step_event_id=event.event_id)
            await self._producer.publish(
                PUSH_RESULTS,
                PushResultEvent.new(
                    producer=self._service_name,
                    account_id=event.account_id,
                    data=result,
                    causation=event,
                ),
            )
            if self._metrics is not None:
                async with redis_errors("counting an unresolved step"):
                    await self._metrics.record_push_once(
                        result.push_id, event.account_id, exc.registry, succeeded=False
                    )
            log.debug(
                "step unresolved",
                step=step.step_name,
                problem=exc.problem.value,
                registry=exc.registry,
                reason=exc.message,
            )
            return

        for command in commands:
            await self._producer.publish(
                PUSH_COMMANDS,
                PushCommandEvent.new(
                    producer=self._service_name,
                    account_id=event.account_id,
                    data=command,
                    causation=event,
                ),
            )
        log.debug(
            "step resolved",
            step=step.step_name,
            step_type=step.step_type,
            status=step.status,
            push_ids=[c.push_id for c in commands],
            offset=delivery.offset,
        )

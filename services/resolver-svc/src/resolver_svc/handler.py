"""The resolver's Kafka handlers: registry changes -> view, steps -> pushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
from regflow.metrics import UNRESOLVED_REGISTRY, PushMetrics
from regflow.redis import redis_errors
from resolver_svc.registries import AccountRegistries, RegistryViewStore
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
# two travel on different topics. Only worth waiting for while the account's
# view is unseen or has just changed; otherwise (an account that simply has no
# default registry) waiting would hold the partition for nothing.
_REGISTRY_PROBLEMS: Final = frozenset(
    {ResolutionProblem.UNKNOWN_REGISTRY, ResolutionProblem.NO_DEFAULT_REGISTRY}
)
_GRACE_POLL_SECONDS: Final = 0.25


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._registries = registries
        self._producer = producer
        self._metrics = metrics
        self._service_name = service_name
        self._registry_grace = registry_grace_seconds
        self._clock = clock

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

    async def _resolve(
        self, event: StepCompletedEvent
    ) -> tuple[AccountRegistries, list[PushCommand] | ResolutionError]:
        """Resolve against the view; wait out a registry change still on its way.

        Returns the view last read and the commands, or the error if the step
        cannot be resolved. A registry problem is re-checked for up to
        ``registry_grace_seconds`` (holding the partition that long at most)
        only when the account's view was never seen or changed within that
        grace; otherwise, and for every other problem, it fails at once.
        """
        deadline: float | None = None
        grace = timedelta(seconds=self._registry_grace)
        while True:
            registries = await self._registries.load(event.account_id)
            try:
                commands = resolve_step(
                    event.data, registries, step_event_id=event.event_id
                )
            except ResolutionError as exc:
                if exc.problem not in _REGISTRY_PROBLEMS:
                    return registries, exc
                if deadline is None:
                    if registries.settled(self._clock(), grace):
                        return registries, exc
                    deadline = time.monotonic() + self._registry_grace
                if time.monotonic() >= deadline:
                    return registries, exc
            else:
                return registries, commands
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
        registries, commands = await self._resolve(event)
        if isinstance(commands, ResolutionError):
            await self._publish_unresolved(event, registries, commands)
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

    async def _publish_unresolved(
        self,
        event: StepCompletedEvent,
        registries: AccountRegistries,
        exc: ResolutionError,
    ) -> None:
        """Publish the step's failed result and count it once."""
        step = event.data
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
            # Only the account's own registries get counters: any other name
            # the step gave (even an unexpanded ``${{X}}``) would create a key
            # per spelling.
            if exc.registry in registries.registries:
                registry = exc.registry
            else:
                registry = UNRESOLVED_REGISTRY
            async with redis_errors("counting an unresolved step"):
                await self._metrics.record_push_once(
                    result.push_id, event.account_id, registry, succeeded=False
                )
        log.debug(
            "step unresolved",
            step=step.step_name,
            problem=exc.problem.value,
            registry=exc.registry,
            reason=exc.message,
        )

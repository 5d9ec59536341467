"""Turns push commands into pushes and push results.

The handler is idempotent on ``push_id``: the result of a finished push is
stored in Redis together with its metrics, in one transaction, before it is
published. A redelivered command finds it there and publishes the stored result
again (same event id, so consumers can dedupe) without pushing or counting twice.
"""

from __future__ import annotations

import time

import structlog
from redis.asyncio import Redis

from pusher_svc.engine import CopyEngine, CopyReport
from pusher_svc.settings import PusherSettings
from regflow.events import (
    PUSH_RESULTS,
    FailureReason,
    PushCommand,
    PushCommandEvent,
    PushFailed,
    PushResult,
    PushResultEvent,
    PushSucceeded,
)
from regflow.kafka import Delivery, EventProducer
from regflow.metrics import PushMetrics
from regflow.oci import (
    RegistryClient,
    RegistryError,
    RetryPolicy,
    TokenCache,
    registry_api_host,
)
from regflow.redis import RedisKeys, redis_errors
from regflow.registries import (
    CredentialsUnreadable,
    RegistryIntegration,
    RegistryNotFound,
    RegistryStore,
)

log = structlog.get_logger(__name__)

SERVICE = "pusher-svc"


class PushHandler:
    """The pusher's handler for the push-commands topic."""

    def __init__(
        self,
        *,
        settings: PusherSettings,
        store: RegistryStore,
        redis: Redis,
        keys: RedisKeys,
        producer: EventProducer,
        engine: CopyEngine | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._redis = redis
        self._keys = keys
        self._producer = producer
        self._metrics = PushMetrics(redis, keys)
        self._engine = engine or CopyEngine(blob_concurrency=settings.blob_concurrency)
        # Whole-push attempts on top of the clients' request retries and the
        # engine's blob restarts: few, and slow, to ride out longer outages.
        self._push_retry = RetryPolicy(
            attempts=settings.push_attempts,
            backoff_initial=settings.push_retry_initial_seconds,
            backoff_max=60.0,
        )
        # Bearer tokens outlive a push: later pushes to a repository reuse them.
        self._tokens = TokenCache()

    def _result_key(self, push_id: str) -> str:
        return self._keys.key("pusher", "results", push_id)

    async def __call__(self, event: PushCommandEvent, _: Delivery) -> None:
        """Push, store the result with its metrics, publish it. See module doc."""
        command = event.data
        with structlog.contextvars.bound_contextvars(
            push_id=command.push_id, registry=command.destination.registry
        ):
            async with redis_errors("looking up a finished push"):
                stored = await self._redis.get(self._result_key(command.push_id))
            if stored is not None:
                log.info("push already done; republishing its result")
                await self._producer.publish(
                    PUSH_RESULTS, PushResultEvent.model_validate_json(stored)
                )
                return

            outcome = await self._outcome(event.account_id, command)
            result = PushResultEvent.new(
                producer=SERVICE,
                account_id=event.account_id,
                causation=event,
                data=PushResult(
                    push_id=command.push_id,
                    build=command.build,
                    source=command.source,
                    destination=command.destination,
                    registry=command.destination.registry,
                    outcome=outcome,
                ),
            )
            await self._remember(event.account_id, command, result)
            await self._producer.publish(PUSH_RESULTS, result)
            if isinstance(outcome, PushFailed):
                log.warning("push failed", reason=outcome.reason, error=outcome.message)
            else:
                log.info("push succeeded", digest=outcome.digest)

    async def _outcome(
        self, account_id: str, command: PushCommand
    ) -> PushSucceeded | PushFailed:
        """Push and say how it went.

        Every failure of the push becomes a failed outcome, so the platform always
        hears back. Only a registry-store outage (TransientError) escapes: the
        runtime then holds the command back and tries it again later.
        """
        started = time.monotonic()
        found = await self._integration(account_id, command)
        if isinstance(found, PushFailed):
            return found
        try:
            report = await self._copy(command, found)
        except RegistryError as exc:
            failed = PushFailed(
                reason=exc.reason,
                message=str(exc),
                registry_message=exc.registry_message,
                status_code=exc.status_code,
            )
        except Exception as exc:
            # A bug: still answer the platform, and keep the traceback here.
            log.exception("push crashed")
            failed = PushFailed(
                reason=FailureReason.INTERNAL,
                message=f"pusher error: {type(exc).__name__}: {exc}",
            )
        else:
            return _succeeded(report, command.destination.references)
        return failed.model_copy(
            update={"duration_seconds": time.monotonic() - started}
        )

    async def _copy(
        self, command: PushCommand, integration: RegistryIntegration
    ) -> CopyReport:
        # TODO(regflow#2): each push opens fresh connection pools (new TLS
        # handshakes, new auth challenge), and a process pushes one command at a
        # time; share pools per registry and run pushes of different partitions
        # concurrently to use the engine's per-host limit.
        source_host = command.source.registry
        source = RegistryClient(
            source_host,
            credentials=self._settings.source_credentials_for(source_host),
            insecure=self._settings.is_insecure_registry(source_host),
            token_cache=self._tokens,
        )
        # The integration's own host, never the command's: stored credentials
        # only ever go where the operator gave them for.
        target = RegistryClient(
            integration.domain,
            credentials=integration.credentials,
            insecure=self._settings.is_insecure_registry(integration.domain),
            token_cache=self._tokens,
        )
        destination = command.destination
        async with source, target:
            return await self._push_retry.run(
                lambda: self._engine.copy_image(
                    source,
                    command.source.repository,
                    command.source.digest,
                    target,
                    destination.repository,
                    tags=destination.tags,
                ),
                what="push",
            )

    async def _integration(
        self, account_id: str, command: PushCommand
    ) -> RegistryIntegration | PushFailed:
        """The destination's integration, or why the push cannot use it."""
        name = command.destination.registry
        try:
            integration = await self._store.get(account_id, name)
        except RegistryNotFound:
            return PushFailed(
                reason=FailureReason.UNRESOLVED,
                message=f"registry integration {name!r} no longer exists",
            )
        except CredentialsUnreadable as exc:
            return PushFailed(reason=FailureReason.AUTH, message=str(exc))
        moved = (
            registry_api_host(integration.domain).lower()
            != registry_api_host(command.destination.domain).lower()
        )
        if moved:
            return PushFailed(
                reason=FailureReason.UNRESOLVED,
                message=(
                    f"registry integration {name!r} moved from "
                    f"{command.destination.domain} to {integration.domain} after "
                    "this push was resolved; run the step again"
                ),
            )
        return integration

    async def _remember(
        self, account_id: str, command: PushCommand, result: PushResultEvent
    ) -> None:
        outcome = result.data.outcome
        # An outage is retried by the runtime; the push itself is idempotent.
        async with redis_errors("storing a push result"):
            await self._store_result(account_id, command, result, outcome)

    async def _store_result(
        self,
        account_id: str,
        command: PushCommand,
        result: PushResultEvent,
        outcome: PushSucceeded | PushFailed,
    ) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._result_key(command.push_id),
                result.to_bytes(),
                ex=self._settings.result_ttl_seconds,
            )
            self._metrics.queue_push(
                pipe,
                account_id,
                command.destination.registry,
                succeeded=isinstance(outcome, PushSucceeded),
                bytes_moved=outcome.bytes_moved
                if isinstance(outcome, PushSucceeded)
                else 0,
            )
            await pipe.execute()


def _succeeded(report: CopyReport, references: list[str]) -> PushSucceeded:
    return PushSucceeded(
        digest=report.digest,
        media_type=report.media_type,
        references=references,
        platforms=list(report.platforms),
        layers=list(report.layers),
        bytes_moved=report.bytes_moved,
        blobs_copied=report.blobs_copied,
        blobs_skipped=report.blobs_skipped,
        blobs_mounted=report.blobs_mounted,
        duration_seconds=report.duration,
    )

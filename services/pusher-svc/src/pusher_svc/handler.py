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
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

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
from regflow.oci import RegistryClient, RegistryError, TokenCache
from regflow.redis import RedisKeys, redis_errors
from regflow.registries import (
    CredentialsUnreadable,
    RegistryIntegration,
    RegistryNotFound,
    RegistryStore,
)

log = structlog.get_logger(__name__)

SERVICE = "pusher-svc"


class _PushFailedError(Exception):
    """A push ended in a classified failure (internal control flow)."""

    def __init__(self, outcome: PushFailed) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RegistryError) and exc.is_transient


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
        self._insecure = settings.insecure_registry_hosts()
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

            started = time.monotonic()
            try:
                report = await self._push(event.account_id, command)
                outcome: PushSucceeded | PushFailed = _succeeded(
                    report, command.destination.references
                )
            except _PushFailedError as failure:
                outcome = failure.outcome.model_copy(
                    update={"duration_seconds": time.monotonic() - started}
                )
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

    async def _push(self, account_id: str, command: PushCommand) -> CopyReport:
        integration = await self._integration(account_id, command.destination.registry)
        destination = command.destination
        source = RegistryClient(
            command.source.registry,
            credentials=self._settings.source_credentials(),
            insecure=command.source.registry in self._insecure,
            token_cache=self._tokens,
        )
        target = RegistryClient(
            destination.domain,
            credentials=integration.credentials,
            insecure=destination.domain in self._insecure,
            token_cache=self._tokens,
        )
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._settings.push_attempts),
            wait=wait_exponential_jitter(
                multiplier=self._settings.push_retry_initial_seconds,
                jitter=self._settings.push_retry_initial_seconds,
            ),
            reraise=True,
        )
        try:
            async with source, target:
                async for attempt in retrying:
                    with attempt:
                        return await self._engine.copy_image(
                            source,
                            command.source.repository,
                            command.source.digest,
                            target,
                            destination.repository,
                            tags=destination.tags,
                        )
        except RegistryError as exc:
            raise _PushFailedError(
                PushFailed(
                    reason=exc.reason,
                    message=str(exc),
                    registry_message=exc.registry_message,
                    status_code=exc.status_code,
                )
            ) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _integration(self, account_id: str, name: str) -> RegistryIntegration:
        try:
            return await self._store.get(account_id, name)
        except RegistryNotFound as exc:
            raise _PushFailedError(
                PushFailed(
                    reason=FailureReason.UNRESOLVED,
                    message=f"registry integration {name!r} no longer exists",
                )
            ) from exc
        except CredentialsUnreadable as exc:
            raise _PushFailedError(
                PushFailed(reason=FailureReason.AUTH, message=str(exc))
            ) from exc

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

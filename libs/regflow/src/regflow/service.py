"""The process harness every service shares: a FastAPI app around the runtime.

Each service is one process serving HTTP (its API, if any, plus health) while its
Kafka consumers run as tasks in the same event loop. The lifespan owns start-up
and shutdown order:

start:  Redis -> producer -> missing topics created -> consumers join their groups
stop:   consumers finish the batch in hand and commit -> producer flushes -> Redis

uvicorn turns SIGTERM and Ctrl-C into the shutdown half: each consumer finishes
the message in hand (within SHUTDOWN_GRACE_SECONDS) and commits; anything not
finished in time is simply redelivered to the next member.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response, status
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from regflow.errors import ConfigurationError, RegflowError, TransientError
from regflow.events.topics import ALL_TOPICS
from regflow.kafka.admin import ensure_topics
from regflow.kafka.consumer import EventConsumer
from regflow.kafka.delivery import ConsumerSpec
from regflow.kafka.producer import EventProducer, KafkaEventProducer
from regflow.logging import configure_logging
from regflow.metrics import DeadLetterMetrics
from regflow.redis import RedisKeys, create_redis
from regflow.settings import CommonSettings

log = structlog.get_logger(__name__)

# Slack on top of a consumer's poll interval before its loop counts as stuck.
LIVENESS_SLACK_SECONDS = 60.0
# How long shutdown waits for consumers to finish the message in hand; what is
# not finished by then is redelivered to the next member (handlers are
# idempotent).
SHUTDOWN_GRACE_SECONDS = 25.0
# How long cancelled consumers get to commit and leave their group.
CANCEL_GRACE_SECONDS = 5.0


@dataclass
class ServiceContext:
    """What a running service's handlers and routes share."""

    name: str
    settings: CommonSettings
    redis: Redis
    producer: EventProducer
    keys: RedisKeys
    consumers: list[EventConsumer[Any]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


ContextHook = Callable[[ServiceContext], Awaitable[None]]


def _no_consumers(_: ServiceContext) -> Sequence[ConsumerSpec[Any]]:
    return ()


def build_service_app(
    name: str,
    settings: CommonSettings,
    *,
    consumers: Callable[[ServiceContext], Sequence[ConsumerSpec[Any]]] = _no_consumers,
    routers: Sequence[APIRouter] = (),
    on_startup: ContextHook | None = None,
    on_shutdown: ContextHook | None = None,
) -> FastAPI:
    """A FastAPI app that runs ``consumers`` and serves ``routers`` plus health.

    ``consumers`` is called once the context exists, so handlers can close over
    its Redis client and producer. ``on_startup`` runs after the consumers
    started, ``on_shutdown`` before they are stopped. Start-up fails (and the
    process exits) if Redis or the broker cannot be reached.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each step registers its own undo, so a failure half-way through start-up
        # releases exactly what was acquired, in reverse order.
        async with contextlib.AsyncExitStack() as undo:
            try:
                context = await _start(undo, name, settings, consumers)
                app.state.context = context
                if on_startup is not None:
                    await on_startup(context)
                if on_shutdown is not None:
                    undo.push_async_callback(on_shutdown, context)
            except (RedisError, RegflowError) as exc:
                # uvicorn logs the traceback; this is the one-line reason.
                log.error("start-up failed", error=str(exc))  # noqa: TRY400
                raise
            log.info("service started", port=settings.http_port)
            try:
                yield
            finally:
                log.info("service stopping")
        log.info("service stopped")

    app = FastAPI(title=name, lifespan=lifespan)
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)
    return app


async def _start(
    undo: contextlib.AsyncExitStack,
    name: str,
    settings: CommonSettings,
    consumers: Callable[[ServiceContext], Sequence[ConsumerSpec[Any]]],
) -> ServiceContext:
    redis = create_redis(settings.redis_url)
    undo.push_async_callback(redis.aclose)
    await redis.ping()
    producer = KafkaEventProducer(settings, client_id=name)
    await producer.start()
    undo.push_async_callback(producer.stop)
    context = ServiceContext(
        name=name,
        settings=settings,
        redis=redis,
        producer=producer,
        keys=RedisKeys(settings.redis_prefix),
    )
    await ensure_topics(settings, ALL_TOPICS)
    undo.push_async_callback(_stop_consumers, context)
    dead_letters = DeadLetterMetrics(redis, context.keys)
    for spec in consumers(context):
        consumer = EventConsumer(
            spec,
            settings=settings,
            producer=producer,
            dead_letters=dead_letters,
            service=name,
        )
        await consumer.start()
        context.consumers.append(consumer)
        task = asyncio.create_task(consumer.run(), name=f"consume-{spec.group_id}")
        task.add_done_callback(_report_crash)
        context.tasks.append(task)
    return context


def _report_crash(task: asyncio.Task[None]) -> None:
    """Log a consumer loop's crash when it happens, not at shutdown."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("consumer crashed", task=task.get_name(), exc_info=error)


async def _stop_consumers(context: ServiceContext) -> None:
    for consumer in context.consumers:
        consumer.request_stop()
    if not context.tasks:
        return
    _, pending = await asyncio.wait(context.tasks, timeout=SHUTDOWN_GRACE_SECONDS)
    for task in pending:
        # Its uncommitted messages are redelivered to the next member.
        log.warning("consumer did not drain in time", task=task.get_name())
        task.cancel()
    if pending:
        # Let the cancelled loops run their own clean-up (commit, leave group).
        await asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS)


def get_context(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context."""
    context: ServiceContext = request.app.state.context
    return context


def _health_router() -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", status_code=status.HTTP_204_NO_CONTENT)
    async def live(request: Request, response: Response) -> None:
        """Alive while every consumer loop runs and progresses (no dependency checks).

        A loop progresses when it polls or finishes a message; one that has done
        neither for longer than its poll interval is stuck.
        """
        context = get_context(request)
        now = time.monotonic()
        for task, consumer in zip(context.tasks, context.consumers, strict=True):
            limit = consumer.spec.max_poll_interval_ms / 1000 + LIVENESS_SLACK_SECONDS
            if task.done() or now - consumer.last_progress > limit:
                response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
                return

    @router.get("/ready")
    async def ready(request: Request, response: Response) -> dict[str, Any]:
        """Ready when Redis answers and every consumer is in its group, unstalled.

        Joining takes a few seconds after start-up (the group's first
        rebalance); events produced meanwhile wait in the topic, nothing is lost.
        A consumer held back by a transient failure (a dependency down) is not
        ready until it moves again.
        """
        context = get_context(request)
        checks: dict[str, bool] = {}
        try:
            checks["redis"] = bool(await context.redis.ping())
        except RedisError:
            checks["redis"] = False
        checks["consumers"] = all(c.joined for c in context.consumers) and not any(
            t.done() for t in context.tasks
        )
        checks["flowing"] = all(c.stalled_since is None for c in context.consumers)
        ok = all(checks.values())
        if not ok:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"ready": ok, "checks": checks}

    return router


# Exit status when start-up failed (Redis or broker unreachable).
STARTUP_FAILURE_EXIT_CODE = 3
# Exit status when the settings are unusable; retrying will not help.
CONFIGURATION_EXIT_CODE = 2

SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def run_service(app: FastAPI, settings: CommonSettings) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C; blocks for the life of the process.

    Exits with status 0 after a graceful shutdown on SIGTERM, and with
    :data:`STARTUP_FAILURE_EXIT_CODE` when the lifespan could not start.
    """
    # uvicorn re-raises the signal that stopped it once it has shut down; this
    # handler turns that into a normal exit, so supervisors see status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE_EXIT_CODE)


def serve(
    name: str,
    settings_type: type[SettingsT],
    create_app: Callable[[SettingsT], FastAPI],
) -> None:
    """A service's ``main``: settings from the environment, checks, logging, serve.

    ``--help`` lists the environment variables and exits. Unusable settings end
    the process with :data:`CONFIGURATION_EXIT_CODE`, an unreachable Redis or
    broker with :data:`STARTUP_FAILURE_EXIT_CODE`, each with one line naming
    what is wrong and which variable sets it, instead of a traceback.
    """
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        sys.stdout.write(_usage(name, settings_type))
        return
    try:
        settings = settings_type()
    except ValidationError as exc:
        _refuse(name, "configuration error", _settings_problems(exc))
    configure_logging(name, log_format=settings.log_format, level=settings.log_level)
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        _refuse(name, "configuration error", str(exc))
    problem = asyncio.run(_preflight(settings))
    if problem is not None:
        _refuse(name, "cannot start", problem, STARTUP_FAILURE_EXIT_CODE)
    run_service(app, settings)


async def _preflight(settings: CommonSettings) -> str | None:
    """Why the service cannot start, checked before serving; None if it can."""
    redis = create_redis(settings.redis_url)
    try:
        await redis.ping()
    except RedisError as exc:
        return (
            f"Redis at {_without_password(settings.redis_url)} (REGFLOW_REDIS_URL) "
            f"does not answer: {exc}"
        )
    finally:
        await redis.aclose()
    try:
        await ensure_topics(settings, ALL_TOPICS)
    except TransientError as exc:
        return (
            f"Kafka at {settings.kafka_bootstrap_servers} "
            f"(REGFLOW_KAFKA_BOOTSTRAP_SERVERS) does not answer: {exc}"
        )
    return None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def _usage(name: str, settings_type: type[CommonSettings]) -> str:
    lines = [
        f"usage: python -m {name.replace('-', '_')}  (or regflow-{name})",
        "",
        f"Runs {name} until SIGTERM. Configured by environment variables:",
    ]
    for field_name, info in settings_type.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = f"default {default!r}"
        if isinstance(default, SecretStr):
            shown = "required" if not default.get_secret_value() else "(secret)"
        lines.append(f"  REGFLOW_{field_name.upper():<34} {shown}")
    return "\n".join(lines) + "\n"


def _settings_problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = "REGFLOW_" + "_".join(str(p) for p in error["loc"]).upper()
        problems.append(f"{variable}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def _refuse(
    name: str, what: str, reason: str, status: int = CONFIGURATION_EXIT_CODE
) -> NoReturn:
    sys.stderr.write(f"{name}: {what}: {reason}\n")
    sys.exit(status)

"""What config-svc's routes share beyond the service context, and its lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from config_svc.outbox import OutboxRelay
from config_svc.registries.connection import ConnectionTester
from config_svc.settings import ConfigSettings
from regflow.registries import RegistryStore, SecretBox
from regflow.service import ServiceContext

log = structlog.get_logger(__name__)


@dataclass
class ConfigRuntime:
    """The secret box, outbox relay and connection tester of one process.

    Built with the app (so a bad ``REGFLOW_SECRET_KEYS`` stops the process
    before it serves anything); the Redis client and producer come from the
    :class:`~regflow.service.ServiceContext` once the lifespan made them.
    """

    settings: ConfigSettings
    secret_box: SecretBox
    relay: OutboxRelay
    tester: ConnectionTester
    _relay_task: asyncio.Task[None] | None = field(default=None, init=False)
    _relay_stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _drains: set[asyncio.Task[int]] = field(default_factory=set, init=False)

    @classmethod
    def from_settings(cls, settings: ConfigSettings) -> ConfigRuntime:
        """Build from settings; raises SecretKeyError for unusable keys."""
        return cls(
            settings=settings,
            secret_box=settings.secret_box(),
            relay=OutboxRelay(),
            tester=ConnectionTester(
                settings.is_insecure_registry,
                timeout=settings.connection_test_timeout_seconds,
            ),
        )

    def store(self, context: ServiceContext) -> RegistryStore:
        """The registry store on the context's Redis."""
        return RegistryStore(
            context.redis, context.keys, self.secret_box, producer=context.name
        )

    async def publish_pending(self, context: ServiceContext) -> None:
        """Publish what the outbox holds, waiting at most the configured time.

        Run after every write (once the response is sent). A drain that takes
        longer (broker slow or down) is left to finish on its own rather than
        cancelled: cancelling redis-py in the middle of a command can leave its
        connection hanging. What it does not publish, the periodic relay does.
        """
        drain = asyncio.create_task(
            self.relay.drain(context.redis, context.keys, context.producer),
            name="registry-outbox-drain",
        )
        self._drains.add(drain)
        drain.add_done_callback(self._drains.discard)
        timeout = self.settings.outbox_publish_timeout_seconds
        _, pending = await asyncio.wait({drain}, timeout=timeout)
        if pending:
            log.warning(
                "registry change not published in time; the relay retries",
                timeout_seconds=timeout,
            )

    async def start(self, context: ServiceContext) -> None:
        """Start the periodic relay; its first round drains what a crash left."""
        self._relay_task = asyncio.create_task(
            self.relay.run(
                context.redis,
                context.keys,
                context.producer,
                interval=self.settings.outbox_interval_seconds,
                stop=self._relay_stop,
            ),
            name="registry-outbox-relay",
        )
        log.info(
            "outbox relay started",
            interval_seconds=self.settings.outbox_interval_seconds,
        )

    async def stop(self, context: ServiceContext) -> None:
        """Stop the relay, then make one last bounded attempt to publish.

        Rounds in hand are waited for, not cancelled (see publish_pending);
        one that is still stuck after the grace period is cancelled.
        """
        grace = self.settings.outbox_publish_timeout_seconds
        task, self._relay_task = self._relay_task, None
        running: set[asyncio.Task[Any]] = set(self._drains)
        if task is not None:
            self._relay_stop.set()
            running.add(task)
        if running:
            _, stuck = await asyncio.wait(running, timeout=grace)
            for late in stuck:
                log.warning("outbox relay did not stop in time; cancelled")
                late.cancel()
        await self.publish_pending(context)
        log.info("outbox relay stopped")

"""pusher-svc: the FastAPI app around its push-commands consumer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from pusher_svc.handler import SERVICE, PushHandler
from pusher_svc.settings import PusherSettings
from regflow.events import PUSH_COMMANDS
from regflow.kafka import ConsumerSpec
from regflow.registries import RegistryStore
from regflow.service import ServiceContext, build_service_app

GROUP_ID = "regflow-pusher"
PUSH_POLL_INTERVAL_MS = 15 * 60 * 1000


def create_app(settings: PusherSettings) -> FastAPI:
    """The service: health endpoints and one consumer of push commands.

    Raises SecretKeyError at once when ``REGFLOW_SECRET_KEYS`` is unusable, since
    no stored credential could be read without it.
    """
    secret_box = settings.secret_box()

    def consumers(context: ServiceContext) -> Sequence[ConsumerSpec[Any]]:
        handler = PushHandler(
            settings=settings,
            store=RegistryStore(context.redis, context.keys, secret_box),
            redis=context.redis,
            keys=context.keys,
            producer=context.producer,
        )
        # One push at a time per fetch, and a long poll interval: a push of a
        # large image may take minutes, and the member must not be dropped.
        return [
            ConsumerSpec(
                PUSH_COMMANDS,
                GROUP_ID,
                handler,
                max_batch=1,
                max_poll_interval_ms=PUSH_POLL_INTERVAL_MS,
            )
        ]

    return build_service_app(SERVICE, settings, consumers=consumers)

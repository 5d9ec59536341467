"""The resolver-svc process: two consumers and the health endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from fastapi import FastAPI

from regflow.events import REGISTRY_CHANGES, STEP_COMPLETED
from regflow.kafka import ConsumerSpec
from regflow.metrics import PushMetrics
from regflow.service import ServiceContext, build_service_app
from resolver_svc.handler import SERVICE_NAME, ResolverHandlers
from resolver_svc.registries import RegistryViewStore
from resolver_svc.settings import ResolverSettings


def consumer_specs(
    settings: ResolverSettings, context: ServiceContext
) -> Sequence[ConsumerSpec[Any]]:
    """The resolver's subscriptions, with handlers bound to the context."""
    handlers = ResolverHandlers(
        registries=RegistryViewStore(context.redis, context.keys),
        producer=context.producer,
        metrics=PushMetrics(context.redis, context.keys),
        registry_grace_seconds=settings.registry_grace_seconds,
    )
    return [
        ConsumerSpec(
            REGISTRY_CHANGES, settings.registries_group_id, handlers.registry_changed
        ),
        ConsumerSpec(STEP_COMPLETED, settings.steps_group_id, handlers.step_completed),
    ]


def create_app(settings: ResolverSettings) -> FastAPI:
    """The resolver app; consumers start with the app's lifespan."""
    return build_service_app(
        SERVICE_NAME, settings, consumers=partial(consumer_specs, settings)
    )

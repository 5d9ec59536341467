"""The cache-svc process: three consumers, the recommendation API and health."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from fastapi import FastAPI

from cache_svc.api import router
from cache_svc.handler import SERVICE_NAME, CacheHandlers
from cache_svc.records import AccountRegistryStore, CacheKeys, ImageStore
from cache_svc.settings import CacheSettings
from regflow.events import PUSH_RESULTS, REGISTRY_CHANGES, STEP_COMPLETED
from regflow.kafka import ConsumerSpec
from regflow.service import ServiceContext, build_service_app


def consumer_specs(
    settings: CacheSettings, context: ServiceContext
) -> Sequence[ConsumerSpec[Any]]:
    """cache-svc's subscriptions, with handlers bound to the context."""
    keys = CacheKeys(context.keys)
    handlers = CacheHandlers(
        images=ImageStore(
            context.redis,
            keys,
            branch_index_size=settings.branch_index_size,
            retention=settings.retention,
        ),
        accounts=AccountRegistryStore(context.redis, keys),
    )
    return [
        ConsumerSpec(STEP_COMPLETED, settings.steps_group_id, handlers.step_completed),
        ConsumerSpec(PUSH_RESULTS, settings.results_group_id, handlers.push_result),
        ConsumerSpec(
            REGISTRY_CHANGES, settings.registries_group_id, handlers.registry_changed
        ),
    ]


def create_app(settings: CacheSettings) -> FastAPI:
    """The cache-svc app; consumers start with the app's lifespan."""
    return build_service_app(
        SERVICE_NAME,
        settings,
        consumers=partial(consumer_specs, settings),
        routers=[router],
    )

"""config-svc app fixtures: the real app on a real Redis, a recording producer.

The app's lifespan is not run (httpx's ASGI transport does not run it); the
routes get their service context through FastAPI's dependency override, with
the test's Redis client and a :class:`RecordingProducer` in place of Kafka.
"""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI

from config_svc.app import SERVICE_NAME, create_app
from config_svc.settings import ConfigSettings
from regflow.kafka import RecordingProducer
from regflow.redis import RedisKeys
from regflow.registries import SecretBox
from regflow.service import ServiceContext, get_context
from tests.config_svc.support import LeakGuard


@pytest.fixture
def settings(redis_url: str, redis_prefix: str) -> ConfigSettings:
    """Settings on the test's Redis prefix; loopback registries are plain HTTP."""
    return ConfigSettings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        secret_keys=SecretBox.generate_key(),
        insecure_registries="127.0.0.1",
        connection_test_timeout_seconds=5.0,
    )


@pytest.fixture
def producer() -> RecordingProducer:
    """Records what the app publishes."""
    return RecordingProducer()


@pytest.fixture
def context(
    settings: ConfigSettings,
    redis_client: redis.asyncio.Redis,
    producer: RecordingProducer,
) -> ServiceContext:
    """The service context the lifespan would have built."""
    return ServiceContext(
        name=SERVICE_NAME,
        settings=settings,
        redis=redis_client,
        producer=producer,
        keys=RedisKeys(settings.redis_prefix),
    )


@pytest.fixture
def app(settings: ConfigSettings, context: ServiceContext) -> Iterator[FastAPI]:
    """The real config-svc app with the test's context."""
    application = create_app(settings)
    application.dependency_overrides[get_context] = lambda: context
    yield application
    application.dependency_overrides.clear()


@pytest.fixture
def leak_guard() -> LeakGuard:
    """Secrets the ``api`` client checks every response for."""
    return LeakGuard()


@pytest.fixture
async def api(app: FastAPI, leak_guard: LeakGuard) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, in process; every response is leak-checked."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://config-svc",
        event_hooks={"response": [leak_guard.check]},
    ) as client:
        yield client

"""The recommendation endpoint over ASGI, backed by the test's Redis."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache_svc.api import get_reader
from cache_svc.app import create_app
from cache_svc.records import CacheKeys, ImageStore
from cache_svc.selection import RecommendationReader
from cache_svc.settings import CacheSettings
from regflow.events import (
    ImageRef,
    StepCompleted,
)
from regflow.redis import RedisKeys
from tests.support.events import pushed_result

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "ef" * 32
URL = "/v1/accounts/acct-1/cache-recommendations"


@pytest.fixture
def keys(redis_prefix: str) -> CacheKeys:
    """Cache keys on the test's prefix."""
    return CacheKeys(RedisKeys(redis_prefix))


@pytest.fixture
async def client(
    redis_client: redis.asyncio.Redis, keys: CacheKeys
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its reader pointed at the test's Redis (no lifespan)."""
    app: FastAPI = create_app(CacheSettings())
    app.dependency_overrides[get_reader] = lambda: RecommendationReader(
        redis_client, keys
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cache") as http:
        yield http


async def test_recommendation(
    client: httpx.AsyncClient, redis_client: redis.asyncio.Redis, keys: CacheKeys
) -> None:
    """A recorded build comes back with its references and metadata."""
    step = StepCompleted(
        pipeline_id="p",
        build_id="b1",
        step_name="build",
        step_type="build",
        status="succeeded",
        image=ImageRef(registry="internal:5000", repository="team/app", digest=DIGEST),
        platforms=["linux/amd64"],
        variables={"CF_BRANCH": "main", "CF_REVISION": "abc"},
    )
    built_at = datetime.now(UTC).replace(microsecond=0)
    await ImageStore(redis_client, keys).record_build("acct-1", step, built_at)

    response = await client.get(
        URL,
        params={"repository": "team/app", "platform": "Linux/AMD64", "branch": "feat"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["references"] == [f"internal:5000/team/app@{DIGEST}"]
    [candidate] = body["candidates"]
    assert candidate["match"] == "default_branch"
    assert candidate["digest"] == DIGEST
    assert candidate["branch"] == "main"
    assert candidate["revision"] == "abc"
    assert candidate["platforms"] == ["linux/amd64"]
    assert datetime.fromisoformat(candidate["built_at"]) == built_at
    assert candidate["references"][0]["registry"] is None


async def test_pushed_references_are_pinned_by_digest(
    client: httpx.AsyncClient, redis_client: redis.asyncio.Redis, keys: CacheKeys
) -> None:
    """Tags move, so the API answers ``host/repository@digest`` and lists tags."""
    image = ImageRef(registry="internal:5000", repository="team/app", digest=DIGEST)
    step = StepCompleted(
        pipeline_id="p",
        build_id="b1",
        step_name="build",
        step_type="build",
        status="succeeded",
        image=image,
        platforms=["linux/amd64"],
        variables={"CF_BRANCH": "main"},
    )
    result = pushed_result(
        image,
        registry="hub",
        domain="127.0.0.1:5001",
        repository="team/app",
        tags=["main", "v1"],
    )
    now = datetime.now(UTC).replace(microsecond=0)
    store = ImageStore(redis_client, keys)
    await store.record_build("acct-1", step, now)
    await store.record_push("acct-1", result, now)

    response = await client.get(
        URL, params={"repository": "team/app", "platform": "linux/amd64"}
    )
    assert response.status_code == 200
    body = response.json()
    pinned = f"127.0.0.1:5001/team/app@{DIGEST}"
    assert body["references"] == [pinned]
    [candidate] = body["candidates"]
    assert [
        (r["reference"], r["registry"], r["tags"]) for r in candidate["references"]
    ] == [
        (pinned, "hub", ["main", "v1"]),
        (f"internal:5000/team/app@{DIGEST}", None, []),
    ]


async def test_nothing_is_an_empty_200(client: httpx.AsyncClient) -> None:
    """No images: 200 with empty lists, never an error."""
    response = await client.get(
        URL, params={"repository": "team/app", "platform": "linux/amd64"}
    )
    assert response.status_code == 200
    assert response.json() == {"references": [], "candidates": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"platform": "linux/amd64"}, "repository"),
        ({"repository": "Team/App", "platform": "linux/amd64"}, "repository"),
        ({"repository": "team/app"}, "platform"),
        ({"repository": "team/app", "platform": "amd64"}, "platform"),
        ({"repository": "team/app", "platform": "unknown/unknown"}, "platform"),
        ({"repository": "team/app", "platform": "linux/amd64", "branch": ""}, "branch"),
        (
            {"repository": "team/app", "platform": "linux/amd64", "default_branch": ""},
            "default_branch",
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    """Invalid query parameters are refused, and the field is named."""
    response = await client.get(URL, params=params)
    assert response.status_code == 422
    assert ["query", field] in [e["loc"] for e in response.json()["detail"]]


async def test_redis_down_is_503(keys: CacheKeys) -> None:
    """An unreachable Redis is a 503 with a message, not a crash."""
    app = create_app(CacheSettings())
    dead = redis.asyncio.Redis(
        host="127.0.0.1",
        port=1,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    app.dependency_overrides[get_reader] = lambda: RecommendationReader(dead, keys)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            response = await http.get(
                URL, params={"repository": "team/app", "platform": "linux/amd64"}
            )
    finally:
        await dead.aclose()
    assert response.status_code == 503
    assert "without cache" in response.json()["detail"]

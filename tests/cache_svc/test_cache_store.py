"""Recording image metadata in real Redis and reading recommendations back."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import redis.asyncio

from cache_svc.records import AccountRegistryStore, CacheKeys, ImageStore
from cache_svc.selection import Match, Recommendation, RecommendationReader
from regflow.events import (
    ImageRef,
    Provider,
    PushFailed,
    PushResult,
    RegistryChange,
    RegistryView,
    StepCompleted,
)
from regflow.events.pushes import FailureReason
from regflow.redis import RedisKeys
from tests.support.events import pushed_result

pytestmark = pytest.mark.integration

ACCOUNT = "acct:c"  # a ':' on purpose: key parts must be escaped
REPO = "team/app"
NOW = datetime.now(UTC).replace(microsecond=0)
AMD64 = "linux/amd64"
ARM64 = "linux/arm64"


def digest(n: int) -> str:
    """A distinct valid digest per number."""
    return "sha256:" + f"{n:064x}"


def source(n: int) -> ImageRef:
    """Image ``n`` in the internal registry."""
    return ImageRef(registry="internal:5000", repository=REPO, digest=digest(n))


def build(
    n: int, branch: str | None, platforms: Sequence[str] = (AMD64,)
) -> StepCompleted:
    """A successful build step producing image ``n``."""
    variables = {"CF_REVISION": f"rev{n}"}
    if branch is not None:
        variables["CF_BRANCH"] = branch
    return StepCompleted(
        pipeline_id="proj/pipe",
        build_id=f"b{n}",
        step_name="build",
        step_type="build",
        status="succeeded",
        image=source(n),
        platforms=list(platforms),
        variables=variables,
    )


def pushed(
    n: int, registry: str, tags: Sequence[str], platforms: Sequence[str] = ()
) -> PushResult:
    """A successful push of image ``n`` to ``registry``."""
    return pushed_result(
        source(n),
        registry=registry,
        domain=f"{registry}.example.com",
        repository=REPO,
        tags=tags,
        push_id=f"push-{n}-{registry}",
        build_id=f"b{n}",
        platforms=platforms,
        layers=[digest(1000 + n)],
    )


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


async def members(client: redis.asyncio.Redis, key: str) -> list[str]:
    """A sorted set's members, lowest score first."""
    reply: list[Any] = await client.zrange(key, 0, -1)
    return [text(m) for m in reply]


def at(minutes: int) -> datetime:
    """NOW plus ``minutes``."""
    return NOW + timedelta(minutes=minutes)


class Cache:
    """The store and reader on the test's prefix."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str, **store: Any) -> None:
        self.client = client
        self.prefix = prefix
        keys = CacheKeys(RedisKeys(prefix))
        self.keys = keys
        self.store = ImageStore(client, keys, **store)
        self.reader = RecommendationReader(client, keys)
        self.accounts = AccountRegistryStore(client, keys)

    async def recommendation(
        self, branch: str | None, platform: str = AMD64, default_branch: str = "main"
    ) -> Recommendation:
        """The reader's recommendation for a build of REPO in ACCOUNT."""
        return await self.reader.recommend(
            account_id=ACCOUNT,
            repository=REPO,
            platform=platform,
            branch=branch,
            default_branch=default_branch,
        )

    async def recommend(
        self, branch: str | None, platform: str = AMD64, default_branch: str = "main"
    ) -> list[tuple[Match, str]]:
        """(match, digest) of each candidate."""
        result = await self.recommendation(branch, platform, default_branch)
        return [(c.match, c.digest) for c in result.candidates]

    async def snapshot(self) -> dict[str, Any]:
        """Every key under the prefix with its value and absolute expiry."""
        state: dict[str, Any] = {}
        async for key in self.client.scan_iter(match=f"{self.prefix}:*"):
            kind = text(await self.client.type(key))
            if kind == "hash":
                value: Any = await self.client.hgetall(key)
            elif kind == "zset":
                value = await self.client.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            state[key.decode()] = (value, await self.client.pexpiretime(key))
        return state


@pytest.fixture
def cache(redis_client: redis.asyncio.Redis, redis_prefix: str) -> Cache:
    """A cache on a fresh prefix."""
    return Cache(redis_client, redis_prefix)


async def test_replaying_events_changes_nothing(cache: Cache) -> None:
    """Every event applied twice leaves exactly the state of applying it once."""

    async def apply_all() -> None:
        assert await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
        assert await cache.store.record_push(ACCOUNT, pushed(1, "h", ["main"]), at(1))
        assert await cache.store.record_build(ACCOUNT, build(2, "feat"), at(2))

    await apply_all()
    once = await cache.snapshot()
    assert once
    await apply_all()
    assert await cache.snapshot() == once
    # Replaying the older build after the newer one changes nothing either.
    await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    assert await cache.snapshot() == once


async def test_same_branch_then_default_branch_then_nothing(cache: Cache) -> None:
    """The rule, end to end through Redis."""
    await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    await cache.store.record_build(ACCOUNT, build(2, "main"), at(5))
    await cache.store.record_build(ACCOUNT, build(3, "feat"), at(1))
    await cache.store.record_build(ACCOUNT, build(4, "feat"), at(3))

    assert await cache.recommend("feat") == [
        (Match.BRANCH, digest(4)),
        (Match.DEFAULT_BRANCH, digest(2)),
    ]
    assert await cache.recommend("brand-new") == [(Match.DEFAULT_BRANCH, digest(2))]
    assert await cache.recommend("feat", default_branch="develop") == [
        (Match.BRANCH, digest(4))
    ]
    assert await cache.recommend("x", default_branch="develop") == []


async def test_platforms_are_separate(cache: Cache) -> None:
    """An arm64 build never answers an amd64 request."""
    await cache.store.record_build(ACCOUNT, build(1, "main", [ARM64]), at(0))
    await cache.store.record_build(ACCOUNT, build(2, "main", [AMD64]), at(-5))
    await cache.store.record_build(
        ACCOUNT, build(3, "main", ["linux/arm64/v8"]), at(-1)
    )
    assert await cache.recommend("main", AMD64) == [(Match.BRANCH, digest(2))]
    assert await cache.recommend("main", ARM64) == [(Match.BRANCH, digest(1))]
    assert await cache.recommend("main", "linux/s390x") == []


async def test_multi_platform_image_indexed_for_each(cache: Cache) -> None:
    """One index image serves every platform it holds."""
    await cache.store.record_build(ACCOUNT, build(1, "main", [AMD64, ARM64]), at(0))
    assert await cache.recommend(None, AMD64) == [(Match.DEFAULT_BRANCH, digest(1))]
    assert await cache.recommend(None, ARM64) == [(Match.DEFAULT_BRANCH, digest(1))]


async def test_platforms_from_push_result_index_later(cache: Cache) -> None:
    """A build without platforms is indexed once a push result names them."""
    await cache.store.record_build(ACCOUNT, build(1, "main", []), at(0))
    assert await cache.recommend("main") == []
    await cache.store.record_push(
        ACCOUNT, pushed(1, "harbor", ["main"], [AMD64, "unknown/unknown"]), at(1)
    )
    assert await cache.recommend("main") == [(Match.BRANCH, digest(1))]


async def test_push_before_build_gives_same_state(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """Events from the two topics may arrive in either order."""
    first = Cache(redis_client, redis_prefix + "-a")
    second = Cache(redis_client, redis_prefix + "-b")
    try:
        await first.store.record_build(ACCOUNT, build(1, "main", []), at(0))
        await first.store.record_push(ACCOUNT, pushed(1, "h", ["v1"], [AMD64]), at(1))
        await second.store.record_push(ACCOUNT, pushed(1, "h", ["v1"], [AMD64]), at(1))
        await second.store.record_build(ACCOUNT, build(1, "main", []), at(0))
        a = await first.snapshot()
        b = await second.snapshot()
        assert {k.removeprefix(first.prefix): v for k, v in a.items()} == {
            k.removeprefix(second.prefix): v for k, v in b.items()
        }
    finally:
        for cache in (first, second):
            async for key in redis_client.scan_iter(match=f"{cache.prefix}:*"):
                await redis_client.delete(key)


async def test_references_and_caching_registry(cache: Cache) -> None:
    """Pushed references are listed, the caching registry's first."""
    await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    await cache.store.record_push(ACCOUNT, pushed(1, "cache", ["main"]), at(1))
    await cache.store.record_push(ACCOUNT, pushed(1, "hub", ["main", "v1"]), at(2))
    result = await cache.recommendation(None)
    assert result.references == [f"hub.example.com/team/app@{digest(1)}"]

    change = RegistryChange(
        change="updated",
        version=3,
        registry=RegistryView(name="cache", provider=Provider.OTHER, domain="c"),
        caching_registry="cache",
    )
    assert await cache.accounts.apply(ACCOUNT, change)
    assert not await cache.accounts.apply(
        ACCOUNT, change.model_copy(update={"version": 2, "caching_registry": "hub"})
    )
    result = await cache.recommendation(None)
    [candidate] = result.candidates
    assert [(r.reference, r.tags) for r in candidate.references] == [
        (f"cache.example.com/team/app@{digest(1)}", ("main",)),
        (f"hub.example.com/team/app@{digest(1)}", ("main", "v1")),
        (f"internal:5000/team/app@{digest(1)}", ()),
    ]
    assert candidate.revision == "rev1"
    assert candidate.build_id == "b1"


async def test_moved_tag_pins_each_image_to_its_own_digest(cache: Cache) -> None:
    """``:main`` now points at image 2; image 1 is still offered as itself."""
    await cache.store.record_build(ACCOUNT, build(1, "feat"), at(0))
    await cache.store.record_push(ACCOUNT, pushed(1, "hub", ["main"]), at(1))
    await cache.store.record_build(ACCOUNT, build(2, "main"), at(2))
    await cache.store.record_push(ACCOUNT, pushed(2, "hub", ["main"]), at(3))
    result = await cache.recommendation("feat")
    assert [(c.digest, c.revision) for c in result.candidates] == [
        (digest(1), "rev1"),
        (digest(2), "rev2"),
    ]
    assert result.references == [
        f"hub.example.com/team/app@{digest(1)}",
        f"hub.example.com/team/app@{digest(2)}",
    ]


class CountingConnection(redis.asyncio.Connection):
    """A real connection that counts the requests it writes (round trips)."""

    sent: ClassVar[int] = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Count, then send as usual."""
        type(self).sent += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counting_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on the test Redis whose connections count round trips."""
    client = redis.asyncio.Redis.from_url(
        redis_url, connection_class=CountingConnection
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_recommendation_takes_two_round_trips(
    cache: Cache, counting_client: redis.asyncio.Redis
) -> None:
    """Indexes and account together, then every image hash: two requests."""
    await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    await cache.store.record_build(ACCOUNT, build(2, "feat"), at(1))
    await cache.store.record_build(ACCOUNT, build(1, "feat"), at(2))
    reader = RecommendationReader(counting_client, cache.keys)
    await counting_client.ping()  # connect (and its handshake) before counting
    CountingConnection.sent = 0
    result = await reader.recommend(
        account_id=ACCOUNT,
        repository=REPO,
        platform=AMD64,
        branch="feat",
        default_branch="main",
    )
    assert [c.digest for c in result.candidates] == [digest(1)]
    assert CountingConnection.sent == 2
    CountingConnection.sent = 0
    empty = await reader.recommend(
        account_id=ACCOUNT,
        repository=REPO,
        platform=ARM64,
        branch="feat",
        default_branch="main",
    )
    assert empty.candidates == ()
    assert CountingConnection.sent == 1


async def test_failed_push_is_not_recorded(cache: Cache) -> None:
    """Only successful pushes with a destination leave a trace."""
    failed = pushed(1, "hub", ["x"]).model_copy(
        update={"outcome": PushFailed(reason=FailureReason.AUTH, message="denied")}
    )
    assert not await cache.store.record_push(ACCOUNT, failed, at(0))
    unresolved = pushed(1, "hub", ["x"]).model_copy(update={"destination": None})
    assert not await cache.store.record_push(ACCOUNT, unresolved, at(0))
    assert await cache.snapshot() == {}


async def test_build_without_branch_is_recorded_not_indexed(cache: Cache) -> None:
    """No branch, nothing to match on; the image hash is still kept."""
    assert await cache.store.record_build(ACCOUNT, build(1, None), at(0))
    keys = list(await cache.snapshot())
    assert len(keys) == 1
    assert ":image:" in keys[0]
    assert "acct%3Ac" in keys[0]


async def test_index_trimmed_to_newest(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """Only the newest N images per branch and platform stay indexed."""
    cache = Cache(redis_client, redis_prefix, branch_index_size=3)
    for n in range(1, 7):
        await cache.store.record_build(ACCOUNT, build(n, "main"), at(n))
    index = cache.keys.branch_index(ACCOUNT, REPO, AMD64, "main")
    assert await members(redis_client, index) == [digest(4), digest(5), digest(6)]
    # A late event for a trimmed image does not push a newer one out.
    await cache.store.record_push(ACCOUNT, pushed(1, "h", ["old"], [AMD64]), at(10))
    assert await members(redis_client, index) == [digest(4), digest(5), digest(6)]


async def test_retention_sets_expiry_and_skips_old_events(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """Keys expire after retention; events already past it are not recorded."""
    cache = Cache(redis_client, redis_prefix, retention=timedelta(days=1))
    assert await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    expected_ms = int((at(0) + timedelta(days=1)).timestamp() * 1000)
    for key, (_, expires) in (await cache.snapshot()).items():
        assert expires == expected_ms, key
    assert not await cache.store.record_build(
        ACCOUNT, build(2, "main"), NOW - timedelta(days=2)
    )
    assert await cache.recommend("main") == [(Match.BRANCH, digest(1))]


async def test_expired_image_hash_is_skipped(cache: Cache) -> None:
    """An index entry whose image hash is gone is not recommended."""
    await cache.store.record_build(ACCOUNT, build(1, "main"), at(0))
    await cache.store.record_build(ACCOUNT, build(2, "main"), at(1))
    await cache.client.delete(cache.keys.image(ACCOUNT, REPO, digest(2)))
    assert await cache.recommend("main") == [(Match.BRANCH, digest(1))]


async def test_same_digest_on_two_branches(cache: Cache) -> None:
    """A rebuilt identical image is indexed on every branch it was built on."""
    await cache.store.record_build(ACCOUNT, build(1, "feat", []), at(0))
    await cache.store.record_build(ACCOUNT, build(1, "main", []), at(5))
    await cache.store.record_push(ACCOUNT, pushed(1, "h", ["x"], [AMD64]), at(6))
    assert await cache.recommend("feat", default_branch="other") == [
        (Match.BRANCH, digest(1))
    ]
    assert await cache.recommend("main") == [(Match.BRANCH, digest(1))]


async def test_concurrent_writers_lose_nothing(cache: Cache) -> None:
    """Racing writers of one image merge into the same fields; none is lost.

    Every build adds its branch to ``builds`` and every push its platform to
    ``platforms``: without WATCH a writer overwrites what another merged in
    between its read and its write.
    """
    branches = [f"b{i}" for i in range(6)]
    platforms = [f"linux/arch{i}" for i in range(6)]
    builds = [
        cache.store.record_build(ACCOUNT, build(1, name, []), at(i))
        for i, name in enumerate(branches)
    ]
    pushes = [
        cache.store.record_push(
            ACCOUNT, pushed(1, f"r{i}", ["t"], [platform]), at(10 + i)
        )
        for i, platform in enumerate(platforms)
    ]
    assert all(await asyncio.gather(*builds, *pushes))

    image = await cache.client.hgetall(cache.keys.image(ACCOUNT, REPO, digest(1)))
    assert sorted(json.loads(image[b"builds"])) == branches
    assert json.loads(image[b"platforms"]) == platforms
    for name in branches:
        for platform in platforms:
            result = await cache.recommendation(name, platform, default_branch=name)
            [candidate] = result.candidates
            assert candidate.digest == digest(1)
            assert len(candidate.references) == 7  # six registries, internal

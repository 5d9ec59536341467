"""The registry view in real Redis: versioned, atomic, redelivery-proof."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio

from regflow.events import Provider, RegistryChange, RegistryView
from regflow.redis import RedisKeys
from resolver_svc.registries import RegistryViewStore

pytestmark = pytest.mark.integration

ACCOUNT = "acct-1"


def view(
    name: str, domain: str = "r.example.com", prefix: str | None = None
) -> RegistryView:
    """A registry as config-svc would publish it."""
    return RegistryView(
        name=name, provider=Provider.OTHER, domain=domain, repository_prefix=prefix
    )


def change(
    kind: str, version: int, registry: RegistryView, default: str | None = None
) -> RegistryChange:
    """One change event payload."""
    return RegistryChange.model_validate(
        {
            "change": kind,
            "version": version,
            "registry": registry,
            "default_registry": default,
            "caching_registry": default,
        }
    )


@pytest.fixture
def store(redis_client: redis.asyncio.Redis, redis_prefix: str) -> RegistryViewStore:
    """A store on the test's Redis prefix."""
    return RegistryViewStore(redis_client, RedisKeys(redis_prefix))


async def test_empty_account(store: RegistryViewStore) -> None:
    """An account never seen has version 0 and no registries."""
    current = await store.load(ACCOUNT)
    assert current.version == 0
    assert current.registries == {}
    assert current.default_registry is None


async def test_changed_at_is_the_time_of_the_last_applied_change(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """Applying stamps the view; a redelivered (ignored) change does not."""
    moments = iter(
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (1, 2, 3)
    )
    store = RegistryViewStore(
        redis_client, RedisKeys(redis_prefix), clock=lambda: next(moments)
    )
    assert (await store.load(ACCOUNT)).changed_at is None
    await store.apply(ACCOUNT, change("created", 1, view("a")))
    await store.apply(ACCOUNT, change("created", 2, view("b")))
    await store.apply(ACCOUNT, change("created", 2, view("b")))
    current = await store.load(ACCOUNT)
    assert current.changed_at == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)


async def test_view_without_changed_at_reads_as_settled(
    store: RegistryViewStore, redis_client: redis.asyncio.Redis
) -> None:
    """A view written before ``changed_at`` existed is not waited on."""
    await store.apply(ACCOUNT, change("created", 1, view("a")))
    await redis_client.hdel(store.account_key(ACCOUNT), "changed_at")
    current = await store.load(ACCOUNT)
    assert current.changed_at is None
    assert current.settled(datetime.now(UTC), timedelta(hours=1))


async def test_create_update_delete(store: RegistryViewStore) -> None:
    """Changes apply in order; the default follows every change."""
    await store.apply(ACCOUNT, change("created", 1, view("a"), default="a"))
    await store.apply(ACCOUNT, change("created", 2, view("b"), default="a"))
    await store.apply(
        ACCOUNT, change("updated", 3, view("a", prefix="team"), default="b")
    )
    current = await store.load(ACCOUNT)
    assert current.version == 3
    assert set(current.registries) == {"a", "b"}
    assert current.registries["a"].repository_prefix == "team"
    assert current.default_registry == "b"
    assert current.caching_registry == "b"

    await store.apply(ACCOUNT, change("deleted", 4, view("b")))
    current = await store.load(ACCOUNT)
    assert set(current.registries) == {"a"}
    assert current.default_registry is None
    assert current.version == 4


async def test_redelivered_old_version_is_ignored(store: RegistryViewStore) -> None:
    """A change at or below the stored version changes nothing."""
    first = await store.apply(ACCOUNT, change("created", 1, view("a"), default="a"))
    await store.apply(
        ACCOUNT, change("updated", 2, view("a", domain="new.example.com"))
    )
    stale = await store.apply(ACCOUNT, change("created", 1, view("a"), default="a"))
    same = await store.apply(
        ACCOUNT, change("updated", 2, view("a", domain="x.example"))
    )
    assert first.applied
    assert not stale.applied
    assert not same.applied
    assert stale.previous_version == 2
    current = await store.load(ACCOUNT)
    assert current.registries["a"].domain == "new.example.com"
    assert current.default_registry is None


async def test_delete_keeps_version_against_late_redelivery(
    store: RegistryViewStore,
) -> None:
    """After the last registry is gone, a redelivered create does not revive it."""
    await store.apply(ACCOUNT, change("created", 1, view("a"), default="a"))
    await store.apply(ACCOUNT, change("deleted", 2, view("a")))
    await store.apply(ACCOUNT, change("created", 1, view("a"), default="a"))
    current = await store.load(ACCOUNT)
    assert current.registries == {}
    assert current.version == 2


async def test_accounts_are_separate(store: RegistryViewStore) -> None:
    """One account's changes never show in another's view."""
    await store.apply(ACCOUNT, change("created", 5, view("a"), default="a"))
    other = await store.load("acct-2")
    assert other.registries == {}
    applied = await store.apply("acct-2", change("created", 1, view("z")))
    assert applied.applied


async def test_concurrent_applies_keep_the_newest(store: RegistryViewStore) -> None:
    """Racing writers never let an older version overwrite a newer one."""
    changes = [
        change("updated", v, view("a", domain=f"v{v}.example.com"))
        for v in range(1, 30)
    ]
    await asyncio.gather(*(store.apply(ACCOUNT, c) for c in reversed(changes)))
    current = await store.load(ACCOUNT)
    assert current.version == 29
    assert current.registries["a"].domain == "v29.example.com"

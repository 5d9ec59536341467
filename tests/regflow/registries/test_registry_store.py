"""RegistryStore against a real Redis: rules, atomic flags, encryption, outbox."""

import asyncio
import json
from collections.abc import Callable

import pytest
import redis.asyncio
from pydantic import SecretStr

from regflow.events import REGISTRY_CHANGES, Provider, RegistryChangedEvent
from regflow.redis import RedisKeys
from regflow.registries import (
    CredentialsUnreadable,
    RegistryAlreadyExists,
    RegistryNotFound,
    RegistryPatch,
    RegistryRuleViolation,
    RegistryStore,
    SecretBox,
    credentials_from,
)

pytestmark = pytest.mark.integration

ACCOUNT = "acme"
PASSWORD = "pa55-w0rd-that-must-never-leak"

StoreFactory = Callable[..., RegistryStore]


@pytest.fixture
def keys(redis_prefix: str) -> RedisKeys:
    """Keys under this test's prefix."""
    return RedisKeys(redis_prefix)


@pytest.fixture
def secret_key() -> str:
    """A fresh Fernet key."""
    return SecretBox.generate_key()


@pytest.fixture
def make_store(
    redis_client: redis.asyncio.Redis, keys: RedisKeys, secret_key: str
) -> StoreFactory:
    """Stores on the test's Redis prefix, with the test key unless told otherwise."""

    def make(keys_setting: str | None = None) -> RegistryStore:
        box = SecretBox.from_setting(keys_setting or secret_key)
        return RegistryStore(redis_client, keys, box)

    return make


@pytest.fixture
def store(make_store: StoreFactory) -> RegistryStore:
    """The store under test."""
    return make_store()


async def _outbox(
    redis_client: redis.asyncio.Redis, store: RegistryStore
) -> list[RegistryChangedEvent]:
    raw: list[bytes] = await redis_client.lrange(store.outbox_key, 0, -1)  # type: ignore[assignment]
    return [REGISTRY_CHANGES.decode(entry) for entry in raw]


async def _create(store: RegistryStore, name: str, **fields: object) -> None:
    defaults: dict[str, object] = {"provider": Provider.OTHER, "domain": "ghcr.io"}
    defaults.update(fields)
    await store.create(ACCOUNT, name=name, **defaults)  # type: ignore[arg-type]


async def test_create_then_get_and_list(store: RegistryStore) -> None:
    """A created integration reads back with its credentials decrypted."""
    result = await store.create(
        ACCOUNT,
        name="prod",
        provider=Provider.OTHER,
        domain="Registry.Example.com:5000",
        repository_prefix="team/app",
        credentials=credentials_from("bot", PASSWORD),
    )
    assert result.version == 1
    assert result.event is not None
    assert result.event.data.change == "created"

    got = await store.get(ACCOUNT, "prod")
    assert got.domain == "registry.example.com:5000"
    assert got.repository_prefix == "team/app"
    assert got.credentials is not None
    assert got.credentials.username == "bot"
    assert got.credentials.password.get_secret_value() == PASSWORD
    assert [r.name for r in await store.list(ACCOUNT)] == ["prod"]
    assert await store.list("another-account") == []


async def test_password_is_encrypted_at_rest(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """The raw Redis value holds a Fernet token, never the password.

    The username, which is not secret, is kept beside the token, so reads need
    no key.
    """
    await _create(store, "prod", credentials=credentials_from("bot-user", PASSWORD))
    raw = await redis_client.hget(store.registries_key(ACCOUNT), "prod")
    assert raw is not None
    assert PASSWORD.encode() not in raw
    record = json.loads(raw)
    assert record["credentials"].startswith("gAAAA")  # a Fernet token
    assert record["username"] == "bot-user"
    for entry in await redis_client.lrange(store.outbox_key, 0, -1):
        assert PASSWORD.encode() not in entry


async def test_credentials_copied_to_another_registry_are_refused(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """A token moved onto another integration in Redis does not decrypt for it."""
    await _create(store, "a", credentials=credentials_from("bot", PASSWORD))
    await _create(store, "b")
    key = store.registries_key(ACCOUNT)
    record_a = json.loads(await redis_client.hget(key, "a") or b"")
    record_b = json.loads(await redis_client.hget(key, "b") or b"")
    record_b["credentials"] = record_a["credentials"]
    await redis_client.hset(key, "b", json.dumps(record_b))
    with pytest.raises(CredentialsUnreadable) as caught:
        await store.get(ACCOUNT, "b")
    assert caught.value.name == "b"


async def test_rotation_keeps_old_credentials_readable_and_reencrypts(
    make_store: StoreFactory, secret_key: str
) -> None:
    """A new first key still reads old tokens; reencrypt makes the old key unneeded."""
    await _create(make_store(), "prod", credentials=credentials_from("bot", PASSWORD))
    new_key = SecretBox.generate_key()
    rotating = make_store(f"{new_key},{secret_key}")
    assert await rotating.reencrypt(ACCOUNT) == 1
    only_new = make_store(new_key)
    got = await only_new.get(ACCOUNT, "prod")
    assert got.credentials is not None
    assert got.credentials.password.get_secret_value() == PASSWORD
    with pytest.raises(CredentialsUnreadable):
        await make_store(SecretBox.generate_key()).get(ACCOUNT, "prod")


async def test_unreadable_credentials_leave_the_account_usable(
    make_store: StoreFactory,
) -> None:
    """Without the sealing key, reads, flags, replacing and deleting still work.

    Only get(), which hands out the password, refuses.
    """
    await _create(make_store(), "prod", credentials=credentials_from("bot", PASSWORD))
    await _create(make_store(), "spare", credentials=credentials_from("ci", PASSWORD))
    other_key = make_store(SecretBox.generate_key())

    listed = await other_key.list(ACCOUNT)
    assert [(r.name, r.username, r.has_credentials) for r in listed] == [
        ("prod", "bot", True),
        ("spare", "ci", True),
    ]
    described = await other_key.describe(ACCOUNT, "prod")
    assert (described.username, described.has_credentials) == ("bot", True)
    with pytest.raises(CredentialsUnreadable) as caught:
        await other_key.get(ACCOUNT, "prod")
    assert (caught.value.account_id, caught.value.name) == (ACCOUNT, "prod")

    flagged = await other_key.set_default(ACCOUNT, "prod")
    assert flagged.registry is not None
    assert flagged.registry.is_default
    replaced = await other_key.update(
        ACCOUNT, "prod", RegistryPatch(domain="quay.io", password=SecretStr("new-pw"))
    )
    assert replaced.registry is not None
    assert replaced.registry.username == "bot"
    got = await other_key.get(ACCOUNT, "prod")
    assert got.credentials == credentials_from("bot", "new-pw")

    removed = await other_key.update(
        ACCOUNT, "spare", RegistryPatch(username=None, password=None)
    )
    assert removed.registry is not None
    assert not removed.registry.has_credentials
    await _create(make_store(), "gone", credentials=credentials_from("x", PASSWORD))
    deleted = await other_key.delete(ACCOUNT, "gone")
    assert deleted.registry is not None
    assert deleted.registry.username == "x"
    assert [r.name for r in await other_key.list(ACCOUNT)] == ["prod", "spare"]


async def test_patch_that_leaves_credentials_alone_keeps_their_token(
    make_store: StoreFactory, redis_client: redis.asyncio.Redis
) -> None:
    """Other fields change without the key; the token still opens with its key."""
    sealing = make_store()
    await _create(sealing, "prod", credentials=credentials_from("bot", PASSWORD))
    key = sealing.registries_key(ACCOUNT)
    token = json.loads(await redis_client.hget(key, "prod") or b"")["credentials"]
    other_key = make_store(SecretBox.generate_key())
    result = await other_key.update(
        ACCOUNT, "prod", RegistryPatch(repository_prefix="team", username="bot")
    )
    assert result.version == 2
    record = json.loads(await redis_client.hget(key, "prod") or b"")
    assert (record["credentials"], record["repository_prefix"]) == (token, "team")
    got = await sealing.get(ACCOUNT, "prod")
    assert got.credentials == credentials_from("bot", PASSWORD)


async def test_changing_only_the_username_needs_a_readable_password(
    make_store: StoreFactory,
) -> None:
    """The kept password is resealed with the new username; unreadable: 'give it'."""
    await _create(make_store(), "prod", credentials=credentials_from("bot", PASSWORD))
    other_key = make_store(SecretBox.generate_key())
    with pytest.raises(RegistryRuleViolation) as caught:
        await other_key.update(ACCOUNT, "prod", RegistryPatch(username="robot"))
    assert caught.value.field == "password"
    assert "give the password again" in caught.value.message
    assert (await other_key.describe(ACCOUNT, "prod")).username == "bot"


async def test_a_changed_username_beside_the_token_is_refused(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """The sealed username wins: an edited plain copy makes get() refuse."""
    await _create(store, "prod", credentials=credentials_from("bot", PASSWORD))
    key = store.registries_key(ACCOUNT)
    record = json.loads(await redis_client.hget(key, "prod") or b"")
    record["username"] = "someone-else"
    await redis_client.hset(key, "prod", json.dumps(record))
    with pytest.raises(CredentialsUnreadable):
        await store.get(ACCOUNT, "prod")


async def test_names_are_unique_per_account(store: RegistryStore) -> None:
    """A second registry of the same name fails; other accounts are separate."""
    await _create(store, "prod")
    with pytest.raises(RegistryAlreadyExists):
        await _create(store, "prod", domain="quay.io")
    await store.create("other", name="prod", provider=Provider.QUAY)


async def test_names_are_unique_regardless_of_case(store: RegistryStore) -> None:
    """'EXT' cannot join 'ext'; the name keeps its case; lookups stay exact."""
    await _create(store, "ext")
    with pytest.raises(RegistryAlreadyExists) as caught:
        await _create(store, "EXT", domain="quay.io")
    assert (caught.value.name, caught.value.existing) == ("EXT", "ext")
    assert "named 'ext'" in str(caught.value)
    await _create(store, "Mixed.Case")
    assert [r.name for r in await store.list(ACCOUNT)] == ["Mixed.Case", "ext"]
    for miss in (
        store.get(ACCOUNT, "EXT"),
        store.update(ACCOUNT, "EXT", RegistryPatch(repository_prefix="x")),
        store.delete(ACCOUNT, "mixed.case"),
        store.set_default(ACCOUNT, "Ext"),
    ):
        with pytest.raises(RegistryNotFound) as missed:
            await miss
        assert missed.value.similar is not None
        assert f"did you mean {missed.value.similar!r}" in str(missed.value)
    with pytest.raises(RegistryNotFound) as unrelated:
        await store.get(ACCOUNT, "nothing-like-it")
    assert unrelated.value.similar is None


async def test_concurrent_creates_differing_in_case_have_one_winner(
    store: RegistryStore,
) -> None:
    """Racing creates of 'ext', 'EXT', 'Ext'...: exactly one is stored."""
    names = ["ext", "EXT", "Ext", "eXt", "exT", "EXt"]
    results = await asyncio.gather(
        *(_create(store, name) for name in names), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == len(names) - 1
    assert all(isinstance(f, RegistryAlreadyExists) for f in failures)
    assert len(await store.list(ACCOUNT)) == 1


async def test_concurrent_creates_of_one_name_have_one_winner(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """Racing creates: exactly one succeeds, and only its event is in the outbox."""
    results = await asyncio.gather(
        *(_create(store, "prod", domain=f"r{i}.example.com") for i in range(8)),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 7
    assert all(isinstance(f, RegistryAlreadyExists) for f in failures)
    assert len(await _outbox(redis_client, store)) == 1


async def test_rule_violations_name_the_field_and_write_nothing(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """Invalid input raises a violation naming the field; nothing is stored."""
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": "-bad"}, "name"),
        ({"domain": "https://ghcr.io"}, "domain"),
        ({"domain": "us.gcr.io/project"}, "domain"),
        ({"repository_prefix": "Team"}, "repository_prefix"),
        ({"provider": Provider.DOCKERHUB, "domain": "ghcr.io"}, "domain"),
        (
            {
                "provider": Provider.DOCKERHUB,
                "domain": None,
                "repository_prefix": "a/b",
            },
            "repository_prefix",
        ),
        ({"provider": Provider.ECR, "domain": None}, "domain"),
        (
            {"domain": "INDEX.docker.io:443", "repository_prefix": "a/b"},
            "repository_prefix",
        ),
    ]
    for fields, field in cases:
        name = str(fields.pop("name", "ok"))
        with pytest.raises(RegistryRuleViolation) as caught:
            await _create(store, name, **fields)
        assert caught.value.field == field, fields
    with pytest.raises(RegistryRuleViolation) as account:
        await store.create("bad account", name="x", provider=Provider.QUAY)
    assert account.value.field == "account_id"
    assert await store.list(ACCOUNT) == []
    assert await _outbox(redis_client, store) == []


async def test_docker_hub_gets_its_domain(store: RegistryStore) -> None:
    """A dockerhub integration lives on docker.io without being told."""
    result = await store.create(
        ACCOUNT, name="hub", provider=Provider.DOCKERHUB, repository_prefix="acme"
    )
    assert result.registry is not None
    assert result.registry.domain == "docker.io"


async def test_partial_update_changes_only_given_fields(store: RegistryStore) -> None:
    """Omitted fields keep their value, the password included."""
    await _create(
        store,
        "prod",
        repository_prefix="team",
        credentials=credentials_from("bot", PASSWORD),
    )
    result = await store.update(
        ACCOUNT, "prod", RegistryPatch(domain="quay.io", password=SecretStr(PASSWORD))
    )
    assert result.version == 2
    got = await store.get(ACCOUNT, "prod")
    assert got.domain == "quay.io"
    assert got.repository_prefix == "team"
    assert got.credentials is not None
    assert got.credentials.password.get_secret_value() == PASSWORD
    assert got.updated_at > got.created_at

    await store.update(ACCOUNT, "prod", RegistryPatch(username="robot"))
    got = await store.get(ACCOUNT, "prod")
    assert got.credentials is not None
    assert got.credentials.username == "robot"
    assert got.credentials.password.get_secret_value() == PASSWORD

    await store.update(
        ACCOUNT,
        "prod",
        RegistryPatch(repository_prefix=None, username=None, password=None),
    )
    got = await store.get(ACCOUNT, "prod")
    assert got.repository_prefix is None
    assert got.credentials is None


async def test_update_that_changes_nothing_writes_nothing(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """Patching with the stored values bumps no version and emits no event."""
    await _create(store, "prod", credentials=credentials_from("bot", PASSWORD))
    result = await store.update(
        ACCOUNT, "prod", RegistryPatch(domain="GHCR.io", password=SecretStr(PASSWORD))
    )
    assert result.event is None
    assert result.version == 1
    assert len(await _outbox(redis_client, store)) == 1


async def test_update_checks_the_merged_integration(store: RegistryStore) -> None:
    """Rules apply to the result: half credentials, Docker Hub caching, no provider."""
    await _create(store, "prod")
    with pytest.raises(RegistryRuleViolation) as half:
        await store.update(ACCOUNT, "prod", RegistryPatch(username="bot"))
    assert half.value.field == "password"
    with pytest.raises(RegistryRuleViolation) as provider:
        await store.update(ACCOUNT, "prod", RegistryPatch(provider=None))
    assert provider.value.field == "provider"
    await store.set_caching(ACCOUNT, "prod")
    with pytest.raises(RegistryRuleViolation) as hub:
        await store.update(ACCOUNT, "prod", RegistryPatch(provider=Provider.DOCKERHUB))
    assert hub.value.field == "provider"
    with pytest.raises(RegistryNotFound):
        await store.update(ACCOUNT, "missing", RegistryPatch(domain="quay.io"))


@pytest.mark.parametrize(
    "patch",
    [
        RegistryPatch(domain="attacker.example.com"),
        RegistryPatch(domain="attacker.example.com", username="bot"),
        RegistryPatch(provider=Provider.QUAY),
        RegistryPatch(provider=Provider.DOCKERHUB),
        RegistryPatch(provider=Provider.GHCR, domain=None),
    ],
)
async def test_stored_credentials_never_follow_a_move(
    store: RegistryStore, redis_client: redis.asyncio.Redis, patch: RegistryPatch
) -> None:
    """A new domain or provider without the password is refused on password."""
    await _create(store, "prod", credentials=credentials_from("bot", PASSWORD))
    with pytest.raises(RegistryRuleViolation) as caught:
        await store.update(ACCOUNT, "prod", patch)
    assert caught.value.field == "password"
    assert "password again" in caught.value.message
    assert "username and password both null" in caught.value.message
    got = await store.get(ACCOUNT, "prod")
    assert (got.provider, got.domain) == (Provider.OTHER, "ghcr.io")
    assert len(await _outbox(redis_client, store)) == 1


async def test_moves_with_new_or_removed_credentials_are_allowed(
    store: RegistryStore,
) -> None:
    """Giving the password again or clearing credentials lets the move through."""
    await _create(store, "prod", credentials=credentials_from("bot", PASSWORD))
    await store.update(
        ACCOUNT,
        "prod",
        RegistryPatch(domain="new.example.com", password=SecretStr("new-secret")),
    )
    got = await store.get(ACCOUNT, "prod")
    assert got.domain == "new.example.com"
    assert got.credentials == credentials_from("bot", "new-secret")
    await store.update(
        ACCOUNT,
        "prod",
        RegistryPatch(provider=Provider.QUAY, username=None, password=None),
    )
    got = await store.get(ACCOUNT, "prod")
    assert (got.provider, got.credentials) == (Provider.QUAY, None)


async def test_docker_hub_host_names_count_as_one_host(store: RegistryStore) -> None:
    """Moving between Docker Hub's own host names keeps the credentials."""
    await _create(
        store,
        "hub",
        domain="index.docker.io",
        credentials=credentials_from("bot", PASSWORD),
    )
    await store.update(ACCOUNT, "hub", RegistryPatch(domain="registry-1.docker.io"))
    got = await store.get(ACCOUNT, "hub")
    assert got.domain == "registry-1.docker.io"
    assert got.credentials is not None


async def test_docker_hub_by_domain_is_never_the_caching_registry(
    store: RegistryStore,
) -> None:
    """Provider other on a Docker Hub host cannot cache, nor move there caching."""
    for host in ("docker.io", "Index.Docker.io", "registry.hub.docker.com:443"):
        name = f"hub-{len(host)}"
        await _create(store, name, domain=host)
        with pytest.raises(RegistryRuleViolation) as caught:
            await store.set_caching(ACCOUNT, name)
        assert caught.value.field == "name"
        assert "Docker Hub" in caught.value.message
    await _create(store, "cache")
    await store.set_caching(ACCOUNT, "cache")
    with pytest.raises(RegistryRuleViolation) as moved:
        await store.update(ACCOUNT, "cache", RegistryPatch(domain="DOCKER.IO:443"))
    assert moved.value.field == "domain"
    assert (await store.get(ACCOUNT, "cache")).domain == "ghcr.io"


async def test_switching_to_docker_hub_brings_its_domain(store: RegistryStore) -> None:
    """Changing the provider to dockerhub moves the domain to docker.io."""
    await _create(store, "prod")
    await store.update(ACCOUNT, "prod", RegistryPatch(provider=Provider.DOCKERHUB))
    assert (await store.get(ACCOUNT, "prod")).domain == "docker.io"


async def test_default_switches_atomically(store: RegistryStore) -> None:
    """Setting a default unsets the previous one in the same change."""
    await _create(store, "a")
    await _create(store, "b")
    first = await store.set_default(ACCOUNT, "a")
    assert first.default_registry == "a"
    second = await store.set_default(ACCOUNT, "b")
    assert second.event is not None
    assert second.event.data.default_registry == "b"
    assert second.event.data.registry.name == "b"
    assert {(r.name, r.is_default) for r in second.changed} == {
        ("b", True),
        ("a", False),
    }
    flags = {r.name: r.is_default for r in await store.list(ACCOUNT)}
    assert flags == {"a": False, "b": True}

    again = await store.set_default(ACCOUNT, "b")
    assert again.event is None
    assert again.version == second.version


async def test_racing_default_switches_leave_exactly_one_default(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """Many concurrent switches: one default at the end, versions without gaps."""
    names = [f"r{i}" for i in range(6)]
    for name in names:
        await _create(store, name)
    await asyncio.gather(*(store.set_default(ACCOUNT, n) for n in names * 3))
    snapshot = await store.snapshot(ACCOUNT)
    defaults = [r.name for r in snapshot.registries if r.is_default]
    assert defaults == [snapshot.default_registry]
    versions = [e.data.version for e in await _outbox(redis_client, store)]
    assert versions == list(range(1, snapshot.version + 1))
    assert versions[-1] == snapshot.version


async def test_caching_registry_is_one_and_never_docker_hub(
    store: RegistryStore,
) -> None:
    """One caching registry at a time; Docker Hub is refused on the name."""
    await _create(store, "a")
    await _create(store, "b")
    await store.create(ACCOUNT, name="hub", provider=Provider.DOCKERHUB)
    await store.set_caching(ACCOUNT, "a")
    result = await store.set_caching(ACCOUNT, "b")
    assert result.caching_registry == "b"
    assert [r.name for r in await store.list(ACCOUNT) if r.is_caching] == ["b"]
    with pytest.raises(RegistryRuleViolation) as caught:
        await store.set_caching(ACCOUNT, "hub")
    assert caught.value.field == "name"
    with pytest.raises(RegistryNotFound):
        await store.set_caching(ACCOUNT, "missing")


async def test_clearing_a_flag_reports_the_registry_that_lost_it(
    store: RegistryStore,
) -> None:
    """set_default(None) leaves no default; the event names the former one."""
    await _create(store, "a")
    await store.set_default(ACCOUNT, "a")
    result = await store.set_default(ACCOUNT, None)
    assert result.event is not None
    assert result.event.data.registry.name == "a"
    assert result.event.data.default_registry is None
    assert (await store.snapshot(ACCOUNT)).default is None
    assert (await store.set_default(ACCOUNT, None)).event is None


async def test_deleting_the_default_leaves_no_default(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """Delete is allowed for the default and caching registry and clears both."""
    await _create(store, "a")
    await _create(store, "b")
    await store.set_default(ACCOUNT, "a")
    await store.set_caching(ACCOUNT, "a")
    result = await store.delete(ACCOUNT, "a")
    assert result.registry is not None
    assert result.registry.is_default  # reported as it was
    assert result.default_registry is None
    assert result.caching_registry is None
    snapshot = await store.snapshot(ACCOUNT)
    assert snapshot.default_registry is None
    assert snapshot.caching_registry is None
    assert [r.name for r in snapshot.registries] == ["b"]
    last = (await _outbox(redis_client, store))[-1]
    assert last.data.change == "deleted"
    assert last.data.registry.name == "a"
    with pytest.raises(RegistryNotFound):
        await store.delete(ACCOUNT, "a")
    with pytest.raises(RegistryNotFound):
        await store.get(ACCOUNT, "a")


async def test_every_change_queues_its_event_with_the_next_version(
    store: RegistryStore, redis_client: redis.asyncio.Redis
) -> None:
    """The outbox holds one event per change, in order, versions 1..N."""
    await _create(store, "a", credentials=credentials_from("bot", PASSWORD))
    await store.update(ACCOUNT, "a", RegistryPatch(repository_prefix="x"))
    await store.set_default(ACCOUNT, "a")
    await store.delete(ACCOUNT, "a", correlation_id="req-42")
    events = await _outbox(redis_client, store)
    assert [(e.data.change, e.data.version) for e in events] == [
        ("created", 1),
        ("updated", 2),
        ("updated", 3),
        ("deleted", 4),
    ]
    assert events[2].data.default_registry == "a"
    assert events[3].correlation_id == "req-42"
    assert all(e.account_id == ACCOUNT and e.producer == "config-svc" for e in events)
    assert (await store.snapshot(ACCOUNT)).version == 4

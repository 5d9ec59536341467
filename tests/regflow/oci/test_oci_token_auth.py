from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from regflow.events import FailureReason
from regflow.oci import (
    Credentials,
    RegistryAuthError,
    RegistryClient,
    RetryPolicy,
    TokenCache,
    digest_of,
)
from tests.support.token_server import TokenServer, TokenUser

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.conftest import RegistryFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    """A token server: alice may pull and push, bob may only pull."""
    server = TokenServer(
        users={
            "alice": TokenUser("alice-pw"),
            "bob": TokenUser("bob-pw", frozenset({"pull"})),
        },
        workdir=tmp_path / "token-server",
    )
    with server.running():
        yield server


@pytest.fixture
def token_registry(
    registry_factory: RegistryFactory, token_server: TokenServer
) -> Registry:
    """A registry that trusts the token server's JWTs."""
    return registry_factory(token_server.registry_auth())


def client(
    registry: Registry,
    username: str | None,
    password: str = "",
    *,
    cache: TokenCache | None = None,
) -> RegistryClient:
    """A client for the token registry as the given user (None: anonymous)."""
    credentials = (
        Credentials(username=username, password=SecretStr(password))
        if username
        else None
    )
    return RegistryClient(
        registry.host,
        credentials=credentials,
        insecure=True,
        retry=RetryPolicy.no_retries(),
        token_cache=cache,
    )


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """The data as a one-chunk stream."""
    yield data


async def test_ping_with_and_without_credentials(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """Valid and anonymous pings pass; a wrong password is an AUTH error."""
    async with client(token_registry, "alice", "alice-pw") as alice:
        await alice.ping()
    async with client(token_registry, None) as anonymous:
        await anonymous.ping()
    async with client(token_registry, "alice", "wrong") as wrong:
        with pytest.raises(RegistryAuthError) as caught:
            await wrong.ping()
    assert caught.value.reason is FailureReason.AUTH
    assert caught.value.registry_message == "incorrect username or password"
    assert caught.value.url == token_server.realm
    assert [r.status for r in token_server.requests] == [200, 200, 401]


async def test_push_asks_for_push_scope_and_reuses_tokens(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """Uploads ask for pull,push first; later requests reuse the cached tokens."""
    data = b"layer bytes" * 1000
    digest = digest_of(data)
    async with client(token_registry, "alice", "alice-pw") as alice:
        assert not await alice.blob_exists("team/app", digest)
        await alice.upload_blob("team/app", digest, len(data), one_chunk(data))
        for _ in range(3):
            assert await alice.blob_exists("team/app", digest)
        async with alice.open_blob("team/app", digest) as reader:
            assert b"".join([c async for c in reader.chunks]) == data

    scopes = [r.scopes for r in token_server.requests]
    assert scopes == [
        ("repository:team/app:pull",),
        ("repository:team/app:pull,push",),
    ]


async def test_pull_only_user_cannot_push(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """A token without push fails the upload with AUTH; reading still works."""
    data = b"content"
    digest = digest_of(data)
    async with client(token_registry, "alice", "alice-pw") as alice:
        await alice.upload_blob("team/app", digest, len(data), one_chunk(data))
    async with client(token_registry, "bob", "bob-pw") as bob:
        assert await bob.blob_exists("team/app", digest)
        with pytest.raises(RegistryAuthError) as caught:
            await bob.upload_blob("team/other", digest, len(data), one_chunk(data))
    assert caught.value.status_code == 401
    assert "UNAUTHORIZED" in (caught.value.registry_message or "")
    assert not any(r.status != 200 for r in token_server.requests)


async def test_shared_token_cache_keeps_users_apart(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """Two users on one cache each get their own token (bob never gets alice's)."""
    cache = TokenCache()
    data = b"shared"
    digest = digest_of(data)
    async with client(token_registry, "alice", "alice-pw", cache=cache) as alice:
        await alice.upload_blob("team/app", digest, len(data), one_chunk(data))
    async with client(token_registry, "bob", "bob-pw", cache=cache) as bob:
        with pytest.raises(RegistryAuthError):
            await bob.upload_blob("team/app", digest, len(data), one_chunk(data))
    users = [r.username for r in token_server.requests]
    assert "bob" in users
    assert users.index("bob") > users.index("alice")

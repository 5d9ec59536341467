from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from regflow.events import FailureReason
from regflow.oci import RegistryAuthError, TokenCache, digest_of
from tests.support.oci import client_as, one_chunk

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.support.token_server import TokenServer

pytestmark = pytest.mark.integration


async def test_ping_with_and_without_credentials(
    token_registry: Registry, token_server: TokenServer
) -> None:
    """Valid and anonymous pings pass; a wrong password is an AUTH error."""
    async with client_as(token_registry, "alice", "alice-pw") as alice:
        await alice.ping()
    async with client_as(token_registry, None) as anonymous:
        await anonymous.ping()
    async with client_as(token_registry, "alice", "wrong") as wrong:
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
    async with client_as(token_registry, "alice", "alice-pw") as alice:
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
    async with client_as(token_registry, "alice", "alice-pw") as alice:
        await alice.upload_blob("team/app", digest, len(data), one_chunk(data))
    async with client_as(token_registry, "bob", "bob-pw") as bob:
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
    async with client_as(token_registry, "alice", "alice-pw", cache=cache) as alice:
        await alice.upload_blob("team/app", digest, len(data), one_chunk(data))
    async with client_as(token_registry, "bob", "bob-pw", cache=cache) as bob:
        with pytest.raises(RegistryAuthError):
            await bob.upload_blob("team/app", digest, len(data), one_chunk(data))
    users = [r.username for r in token_server.requests]
    assert "bob" in users
    assert users.index("bob") > users.index("alice")

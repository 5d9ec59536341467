from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from deploy.images import inspect_raw_async
from pusher_svc.engine import CopyEngine, copy_image
from regflow.events import FailureReason
from regflow.oci import Credentials, RegistryAuthError, RegistryClient, RetryPolicy
from tests.support.token_server import TokenServer, TokenUser

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.conftest import RegistryFactory, SeedImage

pytestmark = pytest.mark.integration


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    """A token server: ci may pull and push, reader may only pull."""
    server = TokenServer(
        users={
            "ci": TokenUser("ci-pw"),
            "reader": TokenUser("reader-pw", frozenset({"pull"})),
        },
        workdir=tmp_path / "token-server",
    )
    with server.running():
        yield server


def token_client(registry: Registry, username: str, password: str) -> RegistryClient:
    """A client of the token-auth registry as ``username``."""
    return RegistryClient(
        registry.host,
        credentials=Credentials(username=username, password=SecretStr(password)),
        insecure=True,
        retry=RetryPolicy.no_retries(),
    )


async def test_copy_into_a_token_auth_registry(
    registry_factory: RegistryFactory,
    seed_image: SeedImage,
    token_server: TokenServer,
) -> None:
    """A two-platform index lands in a Bearer-token registry with its digest."""
    source = registry_factory()
    dest = registry_factory(token_server.registry_auth())
    digest = await seed_image(
        source,
        "ci/app",
        "v1",
        layer_sizes=[200_000, 100_000],
        platforms=["linux/amd64", "linux/arm64"],
    )
    async with (
        RegistryClient(source.host, insecure=True) as src,
        token_client(dest, "ci", "ci-pw") as dst,
    ):
        report = await copy_image(src, "ci/app", digest, dst, "org/app", tags=["v1"])

    raw = await inspect_raw_async(dest.host, "org/app", "v1", ("ci", "ci-pw"))
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    assert report.blobs_copied == 6
    # The upload scope was asked for with push first, once per repository,
    # and tokens were reused across the blobs and manifests.
    push_requests = [
        r for r in token_server.requests if any("push" in s for s in r.scopes)
    ]
    assert push_requests
    assert all(r.scopes[0] == "repository:org/app:pull,push" for r in push_requests)
    assert len(token_server.requests) <= 3


async def test_mount_between_repositories_of_a_token_auth_registry(
    registry_factory: RegistryFactory,
    seed_image: SeedImage,
    token_server: TokenServer,
) -> None:
    """The mount asks for pull on the origin repository too, and succeeds."""
    source = registry_factory()
    dest = registry_factory(token_server.registry_auth())
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[50_000, 50_000])
    engine = CopyEngine()
    async with (
        RegistryClient(source.host, insecure=True) as src,
        token_client(dest, "ci", "ci-pw") as dst,
    ):
        await engine.copy_image(src, "ci/app", digest, dst, "org/one", tags=["v1"])
        report = await engine.copy_image(
            src, "ci/app", digest, dst, "org/two", tags=["v1"]
        )

    assert (report.blobs_copied, report.blobs_mounted) == (0, 3)
    assert (
        "repository:org/two:pull,push",
        "repository:org/one:pull",
    ) in [r.scopes for r in token_server.requests]


async def test_pull_only_user_cannot_push(
    registry_factory: RegistryFactory,
    seed_image: SeedImage,
    token_server: TokenServer,
) -> None:
    """A user whose token lacks push gets an AUTH error, nothing is tagged."""
    source = registry_factory()
    dest = registry_factory(token_server.registry_auth())
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[10_000])
    async with (
        RegistryClient(source.host, insecure=True) as src,
        token_client(dest, "reader", "reader-pw") as dst,
    ):
        with pytest.raises(RegistryAuthError) as caught:
            await copy_image(src, "ci/app", digest, dst, "org/app", tags=["v1"])
        assert await dst.head_manifest("org/app", "v1") is None
    assert caught.value.reason is FailureReason.AUTH
    assert caught.value.status_code == 401

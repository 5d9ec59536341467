from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pusher_svc.engine import CopyEngine, copy_image
from regflow.events import FailureReason
from regflow.oci import RegistryAuthError, RegistryClient
from tests.support.oci import client_as, digest_at

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.conftest import RegistryFactory, SeedImage
    from tests.support.token_server import TokenServer

pytestmark = pytest.mark.integration


async def test_copy_into_a_token_auth_registry(
    registry_factory: RegistryFactory,
    seed_image: SeedImage,
    token_registry: Registry,
    token_server: TokenServer,
) -> None:
    """A two-platform index lands in a Bearer-token registry with its digest."""
    source = registry_factory()
    digest = await seed_image(
        source,
        "ci/app",
        "v1",
        layer_sizes=[200_000, 100_000],
        platforms=["linux/amd64", "linux/arm64"],
    )
    async with (
        RegistryClient(source.host, insecure=True) as src,
        client_as(token_registry, "alice", "alice-pw") as dst,
    ):
        report = await copy_image(src, "ci/app", digest, dst, "org/app", tags=["v1"])

    alice = ("alice", "alice-pw")
    assert await digest_at(token_registry, "org/app", "v1", alice) == digest
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
    token_registry: Registry,
    token_server: TokenServer,
) -> None:
    """The mount asks for pull on the origin repository too, and succeeds."""
    source = registry_factory()
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[50_000, 50_000])
    engine = CopyEngine()
    async with (
        RegistryClient(source.host, insecure=True) as src,
        client_as(token_registry, "alice", "alice-pw") as dst,
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
    token_registry: Registry,
) -> None:
    """A user whose token lacks push gets an AUTH error, nothing is tagged."""
    source = registry_factory()
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[10_000])
    async with (
        RegistryClient(source.host, insecure=True) as src,
        client_as(token_registry, "bob", "bob-pw") as dst,
    ):
        with pytest.raises(RegistryAuthError) as caught:
            await copy_image(src, "ci/app", digest, dst, "org/app", tags=["v1"])
        assert await dst.head_manifest("org/app", "v1") is None
    assert caught.value.reason is FailureReason.AUTH
    assert caught.value.status_code == 401

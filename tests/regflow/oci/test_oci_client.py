from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import SecretStr

from deploy.images import inspect_raw_async
from deploy.stack import free_port
from regflow.oci import (
    OCI_MANIFEST,
    Credentials,
    RegistryAuthError,
    RegistryClient,
    RegistryDigestMismatchError,
    RegistryNameInvalidError,
    RegistryNotFoundError,
    RegistryRejectedError,
    RegistryUnreachableError,
    RetryPolicy,
    digest_of,
)
from tests.support.oci import client_for, creds_of
from tests.support.token_server import serve_asgi

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory, SeedImage

pytestmark = pytest.mark.integration


async def chunked(data: bytes, *sizes: int) -> AsyncIterator[bytes]:
    """Yield ``data`` in pieces of the given sizes (the rest in one piece)."""
    position = 0
    for size in sizes:
        yield data[position : position + size]
        position += size
    yield data[position:]


async def test_ping_classifies_credentials(registry_factory: RegistryFactory) -> None:
    """ping() passes with the right password and raises AuthError otherwise."""
    registry = registry_factory("basic")
    async with client_for(registry) as client:
        await client.ping()
    async with client_for(registry, password="wrong") as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.ping()
    assert caught.value.status_code == 401
    async with RegistryClient(registry.host, insecure=True) as anonymous:
        with pytest.raises(RegistryAuthError):
            await anonymous.ping()

    open_registry = registry_factory()
    async with client_for(open_registry) as client:
        await client.ping()


async def test_ping_of_a_closed_port_is_unreachable() -> None:
    """Nothing listening: a transient NETWORK error, after the retries."""
    policy = RetryPolicy(attempts=2, backoff_initial=0.01, jitter=0.0)
    async with RegistryClient(
        f"127.0.0.1:{free_port()}", insecure=True, retry=policy
    ) as client:
        with pytest.raises(RegistryUnreachableError) as caught:
            await client.ping()
    assert caught.value.is_transient
    assert caught.value.url is not None


async def test_manifest_by_tag_and_digest(
    registry_factory: RegistryFactory, seed_image: SeedImage
) -> None:
    """The bytes and digest we read are what skopeo reads; missing ones are 404s."""
    registry = registry_factory("basic")
    digest = await seed_image(registry, "team/app", "v1", layer_sizes=[4096])
    async with client_for(registry) as client:
        by_tag = await client.get_manifest("team/app", "v1")
        by_digest = await client.get_manifest("team/app", digest)
        head = await client.head_manifest("team/app", "v1")

        assert by_tag.digest == digest
        assert by_tag.media_type == OCI_MANIFEST
        assert by_tag.raw == await inspect_raw_async(
            registry.host, "team/app", "v1", creds_of(registry)
        )
        assert by_digest == by_tag
        assert head is not None
        assert (head.digest, head.media_type) == (digest, OCI_MANIFEST)
        assert head.size == len(by_tag.raw)

        assert await client.head_manifest("team/app", "v2") is None
        with pytest.raises(RegistryNotFoundError) as caught:
            await client.get_manifest("team/app", "v2")
        assert caught.value.registry_message is not None
        assert "MANIFEST_UNKNOWN" in caught.value.registry_message
        with pytest.raises(RegistryNotFoundError):
            await client.get_manifest("team/nothing", digest)


async def test_put_manifest_keeps_the_bytes(
    registry_factory: RegistryFactory, seed_image: SeedImage
) -> None:
    """A manifest PUT under a new tag stores the exact bytes (same digest)."""
    registry = registry_factory()
    digest = await seed_image(registry, "team/app", "v1", layer_sizes=[1024])
    async with client_for(registry) as client:
        manifest = await client.get_manifest("team/app", digest)
        stored = await client.put_manifest(
            "team/app", "v2", manifest.raw, manifest.media_type
        )
        assert stored == digest
        assert await inspect_raw_async(registry.host, "team/app", "v2") == manifest.raw

        with pytest.raises(RegistryDigestMismatchError):
            await client.put_manifest(
                "team/app", digest_of(b"other"), manifest.raw, manifest.media_type
            )
        # A manifest naming blobs the repository lacks is refused by the registry.
        with pytest.raises(RegistryRejectedError) as caught:
            await client.put_manifest(
                "team/empty", "v1", manifest.raw, manifest.media_type
            )
        assert "MANIFEST_BLOB_UNKNOWN" in (caught.value.registry_message or "")


async def test_blob_upload_and_read_back(registry_factory: RegistryFactory) -> None:
    """A streamed monolithic upload is stored; the streamed read gives it back."""
    registry = registry_factory("basic")
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = digest_of(data)
    async with client_for(registry) as client:
        assert not await client.blob_exists("team/app", digest)
        await client.upload_blob(
            "team/app", digest, len(data), chunked(data, 1, 65536, 1024 * 1024)
        )
        assert await client.blob_exists("team/app", digest)

        async with client.open_blob("team/app", digest) as reader:
            assert reader.size == len(data)
            pieces = [chunk async for chunk in reader.chunks]
    assert b"".join(pieces) == data
    # Network reads are joined into chunks of about 1 MiB.
    assert len(pieces) <= len(data) // (1024 * 1024) + 1


async def test_empty_blob_upload(registry_factory: RegistryFactory) -> None:
    """A zero-byte blob (an empty layer) uploads and reads back."""
    registry = registry_factory()
    digest = digest_of(b"")
    async with client_for(registry) as client:
        await client.upload_blob("team/app", digest, 0, chunked(b""))
        async with client.open_blob("team/app", digest, size=0) as reader:
            assert [chunk async for chunk in reader.chunks] == []


async def test_upload_under_the_wrong_digest_is_refused(
    registry_factory: RegistryFactory,
) -> None:
    """The registry checks ?digest=; the failure is classified, nothing is stored."""
    registry = registry_factory()
    data = b"x" * 1000
    wrong = digest_of(b"y" * 1000)
    async with client_for(registry) as client:
        with pytest.raises(RegistryRejectedError) as caught:
            await client.upload_blob("team/app", wrong, len(data), chunked(data))
        assert "DIGEST_INVALID" in (caught.value.registry_message or "")
        assert not await client.blob_exists("team/app", wrong)


async def test_corrupted_blob_is_detected_while_reading(
    registry_factory: RegistryFactory, seed_image: SeedImage
) -> None:
    """Content that does not hash to its digest fails the read, not silently."""
    registry = registry_factory()
    digest = await seed_image(registry, "team/app", "v1", layer_sizes=[50_000])
    async with client_for(registry) as client:
        manifest = await client.get_manifest("team/app", digest)
        layer = manifest.layers[0]
        hex_digest = layer.digest.split(":", 1)[1]
        data_file = Path(
            registry.root,
            "docker/registry/v2/blobs/sha256",
            hex_digest[:2],
            hex_digest,
            "data",
        )
        corrupted = bytearray(await asyncio.to_thread(data_file.read_bytes))
        corrupted[len(corrupted) // 2] ^= 0xFF
        await asyncio.to_thread(data_file.write_bytes, bytes(corrupted))

        with pytest.raises(RegistryDigestMismatchError) as caught:
            async with client.open_blob("team/app", layer.digest, size=layer.size) as r:
                _ = [chunk async for chunk in r.chunks]
    assert caught.value.expected == layer.digest
    assert caught.value.actual == "sha256:" + hashlib.sha256(corrupted).hexdigest()


async def test_missing_blob_is_not_found(registry_factory: RegistryFactory) -> None:
    """Opening a blob the repository lacks raises NotFound."""
    registry = registry_factory()
    async with client_for(registry) as client:
        with pytest.raises(RegistryNotFoundError):
            async with client.open_blob("team/app", digest_of(b"nope"), size=4):
                pass


async def test_invalid_names_are_refused_before_any_request() -> None:
    """Bad repository names and tags never reach the network (nothing listens)."""
    async with RegistryClient(
        f"127.0.0.1:{free_port()}", insecure=True, retry=RetryPolicy.no_retries()
    ) as client:
        with pytest.raises(RegistryNameInvalidError):
            await client.get_manifest("Team/App", "v1")
        with pytest.raises(RegistryNameInvalidError):
            await client.put_manifest("team/app", "bad tag", b"{}", OCI_MANIFEST)
        with pytest.raises(RegistryNameInvalidError):
            await client.blob_exists("team//app", digest_of(b""))


async def test_redirected_blob_read_sends_no_credentials_elsewhere() -> None:
    """A blob GET redirected to storage elsewhere goes there without Authorization."""
    data = os.urandom(300_000)
    digest = digest_of(data)
    seen_at_storage: list[str | None] = []
    storage = FastAPI()

    @storage.get("/objects/{name}")
    async def storage_object(name: str, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        seen_at_storage.append(authorization)
        if authorization is not None:
            return Response("credentials sent to storage", status_code=400)
        return Response(data, media_type="application/octet-stream")

    with serve_asgi(storage) as storage_url:
        registry = FastAPI()
        expected = "Basic " + base64.b64encode(b"ci:pw").decode()

        @registry.get("/v2/")
        @registry.api_route("/v2/team/app/blobs/{blob}", methods=["GET", "HEAD"])
        async def registry_api(request: Request, blob: str = "") -> Response:
            if request.headers.get("authorization") != expected:
                return Response(
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="fake"'},
                )
            if not blob:
                return Response("{}", media_type="application/json")
            return RedirectResponse(f"{storage_url}/objects/{blob}", status_code=307)

        with serve_asgi(registry) as registry_url:
            credentials = Credentials(username="ci", password=SecretStr("pw"))
            async with RegistryClient(
                registry_url.removeprefix("http://"),
                credentials=credentials,
                insecure=True,
                retry=RetryPolicy.no_retries(),
            ) as client:
                await client.ping()
                # A redirect answers a HEAD: the blob is there, storage not asked.
                assert await client.blob_exists("team/app", digest)
                assert seen_at_storage == []
                async with client.open_blob("team/app", digest, size=len(data)) as r:
                    received = b"".join([chunk async for chunk in r.chunks])
    assert received == data
    assert seen_at_storage == [None]

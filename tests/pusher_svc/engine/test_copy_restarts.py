from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

from pusher_svc.engine import CopyEngine
from regflow.oci import (
    OCI_MANIFEST,
    RegistryClient,
    RegistryUnreachableError,
    RetryPolicy,
    digest_of,
)
from tests.support.oci import client_for, digest_at
from tests.support.token_server import serve_asgi

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory

pytestmark = pytest.mark.integration

LAYER = os.urandom(2 * 1024 * 1024)
CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {}}).encode()
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(CONFIG),
            "size": len(CONFIG),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest_of(LAYER),
                "size": len(LAYER),
            }
        ],
    }
).encode()


def flaky_source(failures: int) -> tuple[FastAPI, list[int]]:
    """A source registry whose layer download breaks off mid-way ``failures`` times.

    Returns the app and a list that records the bytes sent per layer request.
    """
    app = FastAPI()
    sent: list[int] = []
    blobs = {digest_of(CONFIG): CONFIG, digest_of(LAYER): LAYER}

    @app.get("/v2/")
    async def base() -> Response:
        return Response("{}", media_type="application/json")

    @app.get("/v2/ci/app/manifests/{reference}")
    async def manifest(reference: str) -> Response:
        if reference != digest_of(MANIFEST):
            return Response(status_code=404)
        return Response(MANIFEST, media_type=OCI_MANIFEST)

    @app.get("/v2/ci/app/blobs/{digest}")
    async def blob(digest: str) -> Response:
        data = blobs.get(digest)
        if data is None:
            return Response(status_code=404)
        if data is not LAYER:
            return Response(data, media_type="application/octet-stream")
        broken = len(sent) < failures
        sent.append(len(data) // 4 if broken else len(data))

        async def body() -> AsyncIterator[bytes]:
            yield data[: len(data) // 4]
            if broken:
                # The connection dies with three quarters of the layer unsent.
                raise ConnectionResetError("simulated network failure")
            yield data[len(data) // 4 :]

        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"Content-Length": str(len(data))},
        )

    return app, sent


async def test_a_broken_download_restarts_the_blob(
    registry_factory: RegistryFactory,
) -> None:
    """A source that drops mid-blob is read again from the start; the copy succeeds."""
    dest = registry_factory("basic")
    app, sent = flaky_source(failures=2)
    engine = CopyEngine(retry=RetryPolicy(attempts=3, backoff_initial=0.01, jitter=0))
    with serve_asgi(app) as source_url:
        async with (
            RegistryClient(source_url.removeprefix("http://"), insecure=True) as src,
            client_for(dest) as dst,
        ):
            report = await engine.copy_image(
                src, "ci/app", digest_of(MANIFEST), dst, "team/app", tags=["v1"]
            )

    assert sent == [len(LAYER) // 4, len(LAYER) // 4, len(LAYER)]
    assert report.blobs_copied == 2
    assert report.bytes_moved == len(LAYER) + len(CONFIG)
    assert await digest_at(dest, "team/app", "v1") == digest_of(MANIFEST)


async def test_restarts_are_bounded(registry_factory: RegistryFactory) -> None:
    """A source that always breaks fails with a NETWORK error after the attempts."""
    dest = registry_factory()
    app, sent = flaky_source(failures=10)
    engine = CopyEngine(retry=RetryPolicy(attempts=2, backoff_initial=0.01, jitter=0))
    with serve_asgi(app) as source_url:
        async with (
            RegistryClient(source_url.removeprefix("http://"), insecure=True) as src,
            RegistryClient(dest.host, insecure=True) as dst,
        ):
            with pytest.raises(RegistryUnreachableError) as caught:
                await engine.copy_image(
                    src, "ci/app", digest_of(MANIFEST), dst, "team/app", tags=["v1"]
                )
            assert not await dst.blob_exists("team/app", digest_of(LAYER))
    assert len(sent) == 2
    assert caught.value.url is not None
    assert caught.value.url.startswith(source_url)

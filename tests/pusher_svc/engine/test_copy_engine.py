from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deploy.stack import LOOPBACK, registry_answers, registry_binary, spawn
from pusher_svc.engine import CopyEngine, CopyReport, copy_image
from regflow.events import FailureReason
from regflow.oci import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryAuthError,
    RegistryClient,
    RegistryNameInvalidError,
    RegistryNotFoundError,
    digest_of,
)
from tests.support.oci import client_for, digest_at, one_chunk

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.conftest import RegistryFactory, SeedImage

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def blob_sizes(*manifests: Manifest) -> dict[str, int]:
    """Every distinct config and layer blob of the manifests, with its size."""
    sizes: dict[str, int] = {}
    for manifest in manifests:
        assert manifest.config is not None
        for descriptor in (manifest.config, *manifest.layers):
            sizes[descriptor.digest] = descriptor.size
    return sizes


async def put_blob(
    client: RegistryClient, repository: str, data: bytes
) -> dict[str, Any]:
    """Upload ``data`` and return its descriptor fields (without mediaType)."""
    digest = digest_of(data)
    await client.upload_blob(repository, digest, len(data), one_chunk(data))
    return {"digest": digest, "size": len(data)}


@pytest.fixture
def source(registry_factory: RegistryFactory) -> Registry:
    """The internal registry the image is built into (no auth)."""
    return registry_factory(name="source")


@pytest.fixture
def dest(registry_factory: RegistryFactory) -> Registry:
    """The customer's registry (basic auth)."""
    return registry_factory("basic", name="dest")


async def test_copies_a_multi_layer_image_under_each_tag(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """Every tag at the destination has the source digest; the report adds up."""
    digest = await seed_image(
        source, "ci/app", "build-1", layer_sizes=[MIB, 2 * MIB, MIB // 2]
    )
    async with client_for(source) as src, client_for(dest) as dst:
        manifest = await src.get_manifest("ci/app", digest)
        report = await copy_image(
            src, "ci/app", digest, dst, "team/app", tags=["1.0", "latest"]
        )

    for tag in ("1.0", "latest"):
        assert await digest_at(dest, "team/app", tag) == digest
    sizes = blob_sizes(manifest)
    assert report.digest == digest
    assert report.media_type == OCI_MANIFEST
    assert report.tags == ("1.0", "latest")
    assert report.blobs_copied == 4
    assert report.blobs_skipped == 0
    assert report.bytes_moved == sum(sizes.values())
    assert report.bytes_moved > 3.5 * MIB
    assert report.platforms == ("linux/amd64",)
    assert report.layers == tuple(layer.digest for layer in manifest.layers)
    assert report.duration > 0


async def test_copies_a_two_platform_index(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """Children land by digest before the index; the index digest is unchanged."""
    digest = await seed_image(
        source,
        "ci/app",
        "multi",
        layer_sizes=[300_000, 200_000],
        platforms=["linux/amd64", "linux/arm64/v8"],
    )
    async with client_for(source) as src, client_for(dest) as dst:
        index = await src.get_manifest("ci/app", digest)
        children = [await src.get_manifest("ci/app", d.digest) for d in index.manifests]
        report = await copy_image(src, "ci/app", digest, dst, "team/app", tags=["v2"])

    assert await digest_at(dest, "team/app", "v2") == digest
    for child in children:
        assert await digest_at(dest, "team/app", child.digest) == child.digest
    assert report.media_type == OCI_INDEX
    assert report.platforms == ("linux/amd64", "linux/arm64/v8")
    sizes = blob_sizes(*children)
    assert report.blobs_copied == len(sizes) == 6
    assert report.bytes_moved == sum(sizes.values())
    assert report.layers == tuple(
        layer.digest for child in children for layer in child.layers
    )


async def test_second_copy_skips_every_blob(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """Copying again moves nothing; the tags are written again all the same."""
    digest = await seed_image(
        source,
        "ci/app",
        "multi",
        layer_sizes=[100_000, 100_000, 100_000],
        platforms=["linux/amd64", "linux/arm64"],
    )
    engine = CopyEngine(blob_concurrency=2)
    async with client_for(source) as src, client_for(dest) as dst:
        first = await engine.copy_image(src, "ci/app", digest, dst, "t/app", tags=["a"])
        again = await engine.copy_image(
            src, "ci/app", digest, dst, "t/app", tags=["a", "b"]
        )

    assert first.blobs_copied == 8
    assert again.blobs_copied == 0
    assert again.bytes_moved == 0
    assert again.blobs_skipped == first.blobs_copied
    assert again.platforms == first.platforms
    assert again.layers == first.layers
    assert await digest_at(dest, "t/app", "b") == digest


async def test_a_second_repository_gets_the_blobs_by_mount(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """The same layers into another repository of the registry: mounted, not sent."""
    digest = await seed_image(
        source, "ci/app", "v1", layer_sizes=[300_000, 200_000, 100_000]
    )
    engine = CopyEngine()
    async with client_for(source) as src, client_for(dest) as dst:
        first = await engine.copy_image(
            src, "ci/app", digest, dst, "team/a", tags=["v1"]
        )
        second = await engine.copy_image(
            src, "ci/app", digest, dst, "team/b", tags=["v1"]
        )
        manifest = await dst.get_manifest("team/b", "v1")
        layer = manifest.layers[0]
        async with dst.open_blob("team/b", layer.digest, size=layer.size) as reader:
            assert sum([len(c) async for c in reader.chunks]) == layer.size

    assert await digest_at(dest, "team/b", "v1") == digest
    assert (first.blobs_copied, first.blobs_mounted) == (4, 0)
    assert (second.blobs_copied, second.blobs_mounted) == (0, 4)
    assert second.bytes_moved == 0


async def test_a_stale_mount_hint_falls_back_to_upload(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """A location that does not hold the blob (202 to the mount) means upload."""
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[100_000])
    engine = CopyEngine()
    async with client_for(source) as src, client_for(dest) as dst:
        manifest = await src.get_manifest("ci/app", digest)
        for blob in blob_sizes(manifest):
            engine.locations.remember((dst.host, dst.identity), blob, "team/ghost")
        report = await engine.copy_image(
            src, "ci/app", digest, dst, "team/app", tags=["v1"]
        )

    assert await digest_at(dest, "team/app", "v1") == digest
    assert (report.blobs_copied, report.blobs_mounted) == (2, 0)


async def test_a_blob_shared_by_two_platforms_is_copied_once(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """Two images sharing their layers: each shared layer is uploaded once."""
    amd64_digest = await seed_image(source, "ci/app", "amd64", layer_sizes=[200_000, 1])
    async with client_for(source) as src, client_for(dest) as dst:
        amd64 = await src.get_manifest("ci/app", amd64_digest)
        arm64_config = await put_blob(
            src,
            "ci/app",
            json.dumps({"os": "linux", "architecture": "arm64", "rootfs": {}}).encode(),
        )
        arm64_document = {
            **amd64.document,
            "config": {**amd64.document["config"], **arm64_config},
        }
        arm64_raw = json.dumps(arm64_document).encode()
        arm64_digest = await src.put_manifest(
            "ci/app", "arm64", arm64_raw, OCI_MANIFEST
        )
        index_raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": amd64_digest,
                        "size": len(amd64.raw),
                        "platform": {"os": "linux", "architecture": "amd64"},
                    },
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": arm64_digest,
                        "size": len(arm64_raw),
                        "platform": {"os": "linux", "architecture": "arm64"},
                    },
                ],
            }
        ).encode()
        index_digest = await src.put_manifest("ci/app", "multi", index_raw, OCI_INDEX)

        report = await copy_image(
            src, "ci/app", index_digest, dst, "team/app", tags=["multi"]
        )

    assert await digest_at(dest, "team/app", "multi") == index_digest
    # Two configs and the two shared layers, each uploaded exactly once.
    assert (report.blobs_copied, report.blobs_skipped) == (4, 0)
    assert report.layers == tuple(layer.digest for layer in amd64.layers)
    assert report.platforms == ("linux/amd64", "linux/arm64")


async def test_unknown_media_types_copy_as_blobs(
    source: Registry, dest: Registry
) -> None:
    """An artifact (unknown config and layer types) is copied blob by blob."""
    async with client_for(source) as src, client_for(dest) as dst:
        config = await put_blob(src, "ci/chart", b'{"name": "chart", "version": "1"}')
        content = await put_blob(src, "ci/chart", b"chart tarball" * 100)
        manifest_raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.chart",
                "config": {
                    "mediaType": "application/vnd.example.config+json",
                    **config,
                },
                "layers": [
                    {"mediaType": "application/vnd.example.content+tar", **content}
                ],
            }
        ).encode()
        digest = await src.put_manifest("ci/chart", "1", manifest_raw, OCI_MANIFEST)

        report = await copy_image(
            src, "ci/chart", digest, dst, "team/chart", tags=["1"]
        )

    assert await digest_at(dest, "team/chart", "1") == digest
    assert report.blobs_copied == 2
    assert report.bytes_moved == config["size"] + content["size"]
    assert report.layers == (content["digest"],)
    # Not an image config: no platform is claimed.
    assert report.platforms == ()


# Distribution refuses foreign layer URLs unless they match an allow list.
FOREIGN_URLS_CONFIG = """validation:
  manifests:
    urls:
      allow:
        - "^https://"
"""


@contextmanager
def allowing_foreign_urls(registry: Registry, workdir: Path) -> Iterator[None]:
    """Restart ``registry`` (same port, storage and auth) accepting foreign URLs."""
    registry.stop()
    registry.config_path.write_text(
        registry.config_path.read_text() + FOREIGN_URLS_CONFIG
    )
    process = spawn(
        f"{registry.name}-foreign-urls",
        [registry_binary(), "serve", str(registry.config_path)],
        workdir,
    )
    try:
        deadline = time.monotonic() + 20
        while not registry_answers(LOOPBACK, registry.port):
            assert process.is_running(), f"registry exited, see {process.log_path}"
            assert time.monotonic() < deadline, "registry did not come back"
            time.sleep(0.05)
        yield
    finally:
        process.stop()


async def test_foreign_layers_with_urls_are_left_out(
    source: Registry, dest: Registry, tmp_path: Path
) -> None:
    """A foreign layer is fetched by clients from its URLs: it is not copied."""
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": digest_of(b"windows base layer, never uploaded"),
        "size": 34,
        "urls": ["https://mcr.example/layers/base"],
    }
    with (
        allowing_foreign_urls(source, tmp_path),
        allowing_foreign_urls(dest, tmp_path),
    ):
        async with client_for(source) as src, client_for(dest) as dst:
            config = await put_blob(src, "ci/win", b'{"os": "windows"}')
            layer = await put_blob(src, "ci/win", b"app layer" * 500)
            manifest_raw = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.docker.container.image.v1+json",
                        **config,
                    },
                    "layers": [
                        foreign,
                        {
                            "mediaType": (
                                "application/vnd.docker.image.rootfs.diff.tar.gzip"
                            ),
                            **layer,
                        },
                    ],
                }
            ).encode()
            digest = await src.put_manifest(
                "ci/win", "1", manifest_raw, DOCKER_MANIFEST
            )

            report = await copy_image(
                src, "ci/win", digest, dst, "team/win", tags=["1"]
            )
            assert not await dst.blob_exists("team/win", str(foreign["digest"]))

        assert await digest_at(dest, "team/win", "1") == digest
    assert report.blobs_copied == 2
    assert report.layers == (foreign["digest"], layer["digest"])


async def test_wrong_destination_password_is_an_auth_error(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """A rejected password fails with AUTH before any tag is written."""
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[1000])
    async with client_for(source) as src, client_for(dest, "wrong") as dst:
        with pytest.raises(RegistryAuthError) as caught:
            await copy_image(src, "ci/app", digest, dst, "team/app", tags=["v1"])
    assert caught.value.reason is FailureReason.AUTH
    assert caught.value.url is not None
    assert caught.value.url.startswith(dest.url)


async def test_missing_source_digest_is_not_found(
    source: Registry, dest: Registry, seed_image: SeedImage
) -> None:
    """A digest the source does not have fails with NOT_FOUND naming the source."""
    await seed_image(source, "ci/app", "v1", layer_sizes=[1000])
    missing = digest_of(b"no such manifest")
    async with client_for(source) as src, client_for(dest) as dst:
        with pytest.raises(RegistryNotFoundError) as caught:
            await copy_image(src, "ci/app", missing, dst, "team/app", tags=["v1"])
        assert await dst.head_manifest("team/app", "v1") is None
    assert caught.value.reason is FailureReason.NOT_FOUND
    assert caught.value.url is not None
    assert caught.value.url.startswith(source.url)


@pytest.mark.parametrize(
    ("repository", "tags"),
    [
        ("Team/App", ["v1"]),
        ("team/app-", ["v1"]),
        ("team/" + "a" * 300, ["v1"]),
        ("team/app", ["bad tag"]),
        ("team/app", [".hidden"]),
    ],
)
async def test_invalid_destination_names_are_classified(
    source: Registry,
    dest: Registry,
    seed_image: SeedImage,
    repository: str,
    tags: list[str],
) -> None:
    """Bad names fail with INVALID_NAME before anything is uploaded."""
    digest = await seed_image(source, "ci/app", "v1", layer_sizes=[1000])
    async with client_for(source) as src, client_for(dest) as dst:
        with pytest.raises(RegistryNameInvalidError) as caught:
            await copy_image(src, "ci/app", digest, dst, repository, tags=tags)
    assert caught.value.reason is FailureReason.INVALID_NAME
    assert not (dest.root / "docker").exists()


def test_report_is_a_value() -> None:
    """CopyReport compares by value (handlers may cache and compare it)."""
    fields: dict[str, Any] = {
        "digest": "sha256:" + "0" * 64,
        "media_type": OCI_MANIFEST,
        "tags": ("v1",),
        "bytes_moved": 1,
        "blobs_copied": 1,
        "blobs_skipped": 0,
        "blobs_mounted": 0,
        "platforms": (),
        "layers": (),
        "duration": 0.1,
    }
    assert CopyReport(**fields) == CopyReport(**fields)

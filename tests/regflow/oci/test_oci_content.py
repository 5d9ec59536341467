import json
from collections.abc import AsyncIterator

import pytest

from regflow.oci.client import RegistryClient
from regflow.oci.digest import digest_of, is_digest, verified_chunks
from regflow.oci.errors import (
    InvalidManifestError,
    RegistryDigestMismatchError,
    RegistryNameInvalidError,
)
from regflow.oci.manifest import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    Platform,
    detect_media_type,
)

pytestmark = pytest.mark.unit

LAYER_DIGEST = "sha256:" + "a" * 64
CONFIG_DIGEST = "sha256:" + "c" * 64


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    """Yield the given chunks."""
    for chunk in chunks:
        yield chunk


async def collect(
    chunks: AsyncIterator[bytes], received: list[bytes] | None = None
) -> bytes:
    """Join a stream; every chunk is also appended to ``received`` as it arrives."""
    out = bytearray()
    async for chunk in chunks:
        if received is not None:
            received.append(chunk)
        out.extend(chunk)
    return bytes(out)


async def test_verified_stream_passes_matching_content_through() -> None:
    """Matching content comes out unchanged, chunk for chunk."""
    data = [b"abc", b"", b"def", b"g"]
    digest = digest_of(b"abcdefg")
    received: list[bytes] = []
    out = await collect(
        verified_chunks(stream(*data), digest=digest, size=7, url=None), received
    )
    assert out == b"abcdefg"
    assert received == [b"abc", b"def", b"g"]


async def test_mismatch_is_raised_instead_of_the_last_chunk() -> None:
    """A forwarding consumer never receives the complete, wrong content."""
    received: list[bytes] = []
    wrong = digest_of(b"something else")
    with pytest.raises(RegistryDigestMismatchError) as caught:
        await collect(
            verified_chunks(stream(b"abc", b"def"), digest=wrong, size=6, url=None),
            received,
        )
    assert received == [b"abc"]
    assert caught.value.expected == wrong
    assert caught.value.actual == digest_of(b"abcdef")


@pytest.mark.parametrize("size", [5, 7])
async def test_size_mismatch_is_raised(size: int) -> None:
    """Content shorter or longer than its declared size is refused."""
    digest = digest_of(b"abcdef")
    with pytest.raises(RegistryDigestMismatchError, match=r"size|longer|ended"):
        await collect(
            verified_chunks(stream(b"abc", b"def"), digest=digest, size=size, url=None)
        )


async def test_sha512_digests_are_verified() -> None:
    """The digest's own algorithm is used."""
    digest = digest_of(b"xyz", "sha512")
    out = await collect(
        verified_chunks(stream(b"xyz"), digest=digest, size=3, url=None)
    )
    assert out == b"xyz"


def image_manifest_bytes() -> bytes:
    """A Docker schema2 manifest with a foreign layer, as a registry stores it."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": CONFIG_DIGEST,
                "size": 7023,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": LAYER_DIGEST,
                    "size": 32654,
                },
                {
                    "mediaType": (
                        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
                    ),
                    "digest": "sha256:" + "f" * 64,
                    "size": 1000,
                    "urls": ["https://mcr.example/layer"],
                },
            ],
        },
        indent=3,
    ).encode()


def test_image_manifest_view() -> None:
    """Config and layers are parsed; foreign layers keep their urls."""
    raw = image_manifest_bytes()
    manifest = Manifest(raw=raw, media_type=detect_media_type(raw, None), digest="x")
    assert not manifest.is_index
    assert manifest.config is not None
    assert manifest.config.digest == CONFIG_DIGEST
    assert [layer.size for layer in manifest.layers] == [32654, 1000]
    assert manifest.layers[1].urls == ("https://mcr.example/layer",)
    assert manifest.manifests == ()


def test_index_view_with_platforms() -> None:
    """Index entries carry their platform; attestation entries are 'unknown'."""
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": LAYER_DIGEST,
                    "size": 10,
                    "platform": {
                        "os": "linux",
                        "architecture": "arm",
                        "variant": "v7",
                    },
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": CONFIG_DIGEST,
                    "size": 11,
                    "platform": {"os": "unknown", "architecture": "unknown"},
                },
            ],
        }
    ).encode()
    manifest = Manifest(raw=raw, media_type=detect_media_type(raw, None), digest="x")
    assert manifest.media_type == OCI_INDEX
    assert manifest.is_index
    platforms = [d.platform for d in manifest.manifests]
    assert platforms == [Platform("linux", "arm", "v7"), Platform("unknown", "unknown")]
    assert str(platforms[0]) == "linux/arm/v7"
    assert platforms[1] is not None
    assert platforms[1].is_unknown
    assert manifest.config is None
    assert manifest.layers == ()


def test_media_type_prefers_the_content_type_header() -> None:
    """A manifest Content-Type wins; application/json falls back to the document."""
    raw = b'{"mediaType": "' + DOCKER_MANIFEST_LIST.encode() + b'", "manifests": []}'
    assert detect_media_type(raw, OCI_INDEX + "; charset=utf-8") == OCI_INDEX
    assert detect_media_type(raw, "application/json") == DOCKER_MANIFEST_LIST
    assert detect_media_type(b'{"config": {}}', None) == OCI_MANIFEST


@pytest.mark.parametrize(
    "document",
    [
        {"config": {"digest": "md5:abc", "size": 1}},
        {"config": {"digest": CONFIG_DIGEST, "size": -1}},
        {"config": {"digest": CONFIG_DIGEST, "size": True}},
        {"config": {"digest": CONFIG_DIGEST, "size": 1}, "layers": "nope"},
    ],
)
def test_malformed_descriptors_are_refused(document: dict[str, object]) -> None:
    """Bad digests, sizes or shapes raise InvalidManifestError, not KeyError."""
    manifest = Manifest(
        raw=json.dumps(document).encode(), media_type=OCI_MANIFEST, digest="x"
    )
    with pytest.raises(InvalidManifestError):
        _ = (manifest.config, manifest.layers)


def test_non_json_manifest_is_refused() -> None:
    """Bytes that are not a JSON object raise InvalidManifestError."""
    with pytest.raises(InvalidManifestError):
        _ = Manifest(raw=b"[1]", media_type=OCI_MANIFEST, digest="x").config
    with pytest.raises(InvalidManifestError):
        _ = Manifest(raw=b"\xff", media_type=OCI_INDEX, digest="x").manifests


@pytest.mark.parametrize("reference", ["sha256:" + "a" * 64 + "\n", "latest\n", "v1\n"])
def test_a_trailing_newline_is_not_a_valid_reference(reference: str) -> None:
    """Names are matched whole: '$' alone would let a trailing newline through."""
    assert not is_digest(reference)
    with pytest.raises(RegistryNameInvalidError):
        RegistryClient("r.example")._reference(reference)


def test_a_trailing_newline_is_not_a_valid_repository() -> None:
    """Repository names are matched whole too."""
    with pytest.raises(RegistryNameInvalidError):
        RegistryClient("r.example").repository("acme/web\n")

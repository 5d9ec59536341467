"""The image builder writes OCI layouts whose digests and diff_ids are right."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from deploy.images import (
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Platform,
    build_image,
    cached_layout,
)

pytestmark = pytest.mark.unit


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == digest
    return data


def _json_blob(layout: Path, digest: str) -> Any:
    return json.loads(_blob(layout, digest))


def test_single_platform_image_has_matching_digests_and_diff_ids(
    tmp_path: Path,
) -> None:
    """Every blob hashes to its name and the config lists the plain-tar digests."""
    built = build_image(tmp_path, "v1", layer_sizes=[3000, [10, 70_000]])

    assert json.loads((tmp_path / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }
    (entry,) = json.loads((tmp_path / "index.json").read_bytes())["manifests"]
    assert entry["digest"] == built.digest
    assert entry["annotations"][REF_NAME_ANNOTATION] == "v1"
    manifest = _json_blob(tmp_path, built.digest)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert entry["size"] == len(_blob(tmp_path, built.digest))
    config = _json_blob(tmp_path, manifest["config"]["digest"])
    assert (config["os"], config["architecture"]) == ("linux", "amd64")

    layer_files = []
    for layer, diff_id in zip(
        manifest["layers"], config["rootfs"]["diff_ids"], strict=True
    ):
        assert layer["mediaType"] == OCI_LAYER_GZIP
        compressed = _blob(tmp_path, layer["digest"])
        assert layer["size"] == len(compressed)
        plain = gzip.decompress(compressed)
        assert f"sha256:{hashlib.sha256(plain).hexdigest()}" == diff_id
        with tarfile.open(fileobj=io.BytesIO(plain)) as archive:
            layer_files.append([m.size for m in archive.getmembers() if m.isfile()])
    assert layer_files == [[3000], [10, 70_000]]


def test_same_seed_gives_the_same_image_and_another_seed_a_different_one(
    tmp_path: Path,
) -> None:
    """Content is a function of the seed, so digests are reproducible."""
    first = build_image(tmp_path / "a", layer_sizes=[4096], seed=7)
    again = build_image(tmp_path / "b", layer_sizes=[4096], seed=7)
    other = build_image(tmp_path / "c", layer_sizes=[4096], seed=8)
    assert first.digest == again.digest
    assert first.digest != other.digest


def test_random_content_does_not_compress(tmp_path: Path) -> None:
    """Layers keep their size on the wire, like real binaries do."""
    built = build_image(tmp_path, layer_sizes=[1 << 20])
    (layer,) = built.manifests[0].layers
    assert layer.descriptor.size >= 1 << 20


def test_two_platforms_make_an_index_with_one_manifest_each(tmp_path: Path) -> None:
    """The index lists a manifest per platform, with variant, and distinct layers."""
    built = build_image(
        tmp_path,
        "multi",
        layer_sizes=[2048],
        platforms=["linux/amd64", "linux/arm64/v8"],
    )
    assert built.is_index
    index = _json_blob(tmp_path, built.digest)
    assert index["mediaType"] == OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    configs = [
        _json_blob(tmp_path, _json_blob(tmp_path, m["digest"])["config"]["digest"])
        for m in index["manifests"]
    ]
    assert [(c["architecture"], c.get("variant")) for c in configs] == [
        ("amd64", None),
        ("arm64", "v8"),
    ]
    layers = {m.layers[0].descriptor.digest for m in built.manifests}
    assert len(layers) == 2


def test_one_platform_given_makes_a_plain_manifest_for_it(tmp_path: Path) -> None:
    """A single platform is not wrapped in an index."""
    built = build_image(
        tmp_path, layer_sizes=[1], platforms=[Platform("linux", "arm64")]
    )
    assert not built.is_index
    config_digest = _json_blob(tmp_path, built.digest)["config"]["digest"]
    assert _json_blob(tmp_path, config_digest)["architecture"] == "arm64"


def test_new_tag_keeps_the_tags_already_in_the_layout(tmp_path: Path) -> None:
    """Building a second tag adds it; rebuilding a tag replaces only that entry."""
    build_image(tmp_path, "one", layer_sizes=[1])
    build_image(tmp_path, "two", layer_sizes=[2])
    build_image(tmp_path, "one", layer_sizes=[3])
    entries = json.loads((tmp_path / "index.json").read_bytes())["manifests"]
    assert sorted(e["annotations"][REF_NAME_ANNOTATION] for e in entries) == [
        "one",
        "two",
    ]


def test_cached_layout_is_built_once_per_arguments(tmp_path: Path) -> None:
    """Asking twice returns the same folder; other arguments get another one."""
    first = cached_layout(tmp_path, layer_sizes=[10], seed=1)
    again = cached_layout(tmp_path, layer_sizes=[10], seed=1)
    other = cached_layout(tmp_path, layer_sizes=[10], seed=2)
    assert first == again
    assert first != other
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d"])
def test_platform_parse_rejects_malformed_text(text: str) -> None:
    """Only os/architecture[/variant] is accepted."""
    with pytest.raises(ValueError, match="platform"):
        Platform.parse(text)


def test_negative_layer_size_is_refused(tmp_path: Path) -> None:
    """A layer file cannot have a negative size."""
    with pytest.raises(ValueError, match="sizes"):
        build_image(tmp_path, layer_sizes=[-1])

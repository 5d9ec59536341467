"""Seeded images land in real registries with digests of the exact manifest bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    SkopeoError,
    build_image,
    copy_to_registry,
    inspect_raw,
)

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory, SeedImage

pytestmark = pytest.mark.integration


def _digest(raw: bytes) -> str:
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


async def test_two_layer_image_digest_is_the_hash_of_the_stored_manifest(
    registry_factory: RegistryFactory, seed_image: SeedImage
) -> None:
    """The returned digest hashes the manifest skopeo reads back from the registry."""
    registry = registry_factory("basic")
    assert registry.username is not None
    assert registry.password is not None
    digest = await seed_image(registry, "team/app", "v1", layer_sizes=[2048, 4096])

    creds = (registry.username, registry.password)
    raw = inspect_raw(registry.host, "team/app", "v1", creds)
    assert _digest(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert len(manifest["layers"]) == 2
    assert inspect_raw(registry.host, "team/app", digest, creds) == raw


async def test_two_platform_index_lands_with_both_manifests(
    registry_factory: RegistryFactory, seed_image: SeedImage
) -> None:
    """An index and every per-platform manifest are in the registry, by digest."""
    registry = registry_factory()
    digest = await seed_image(
        registry, "team/multi", "v2", [1024], ["linux/amd64", "linux/arm64/v8"]
    )

    raw = inspect_raw(registry.host, "team/multi", "v2")
    assert _digest(raw) == digest
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    assert len(index["manifests"]) == 2
    for entry in index["manifests"]:
        child = inspect_raw(registry.host, "team/multi", entry["digest"])
        assert _digest(child) == entry["digest"]


def test_copy_with_wrong_password_fails_without_leaking_it(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """A refusal by skopeo becomes SkopeoError; the password is in no message."""
    registry = registry_factory("basic")
    build_image(tmp_path, "v1", layer_sizes=[16])
    with pytest.raises(SkopeoError) as failure:
        copy_to_registry(
            tmp_path,
            "v1",
            registry.host,
            "team/app",
            username="regflow",
            password="wrong-pw-123",
        )
    assert "wrong-pw-123" not in str(failure.value)
    assert failure.value.returncode != 0

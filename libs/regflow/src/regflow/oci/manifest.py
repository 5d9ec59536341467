"""Manifests as the registry stores them: exact bytes, media type, digest, references.

Manifests are kept as the bytes the registry returned and are never re-serialised:
a manifest's digest is the hash of those bytes, so copying them unchanged is what
keeps the digest equal at the destination. The parsed view is read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from regflow.oci.digest import is_digest
from regflow.oci.errors import InvalidManifestError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES
# Sent as Accept on every manifest GET/HEAD: a registry answers 404 to a HEAD for
# an OCI manifest when only Docker types are accepted (push-anchors §6).
MANIFEST_ACCEPT = (
    f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_MANIFEST_LIST}, {DOCKER_MANIFEST}"
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# Registries must accept manifests of at least 4 MiB; larger ones are refused so a
# misbehaving source cannot make us hold arbitrary amounts in memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Platform:
    """The platform an image runs on, from an index entry or an image config."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    @property
    def is_unknown(self) -> bool:
        """BuildKit attestation manifests carry ``unknown/unknown``: not a platform."""
        return self.os == "unknown" and self.architecture == "unknown"

    @classmethod
    def from_json(cls, value: Any) -> Platform | None:
        """Read ``{"os", "architecture", "variant"}``; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        os_name = value.get("os")
        arch = value.get("architecture")
        variant = value.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            return None
        return cls(os_name, arch, variant if isinstance(variant, str) else None)


@dataclass(frozen=True)
class Descriptor:
    """A reference to content by digest, as found in a manifest."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None

    @classmethod
    def from_json(cls, value: Any, *, where: str) -> Descriptor:
        """Validate one descriptor object; ``where`` names it in errors."""
        if not isinstance(value, dict):
            raise InvalidManifestError(f"{where}: descriptor is not an object")
        digest = value.get("digest")
        size = value.get("size")
        media_type = value.get("mediaType", "")
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidManifestError(f"{where}: bad or unsupported digest {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidManifestError(f"{where}: bad size {size!r}")
        if not isinstance(media_type, str):
            raise InvalidManifestError(f"{where}: bad mediaType {media_type!r}")
        urls = value.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(
            isinstance(u, str) for u in urls
        ):
            raise InvalidManifestError(f"{where}: bad urls {urls!r}")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(urls),
            platform=Platform.from_json(value.get("platform")),
        )


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes, the media type it is served as, and its digest."""

    raw: bytes = field(repr=False)
    media_type: str
    digest: str

    @property
    def is_index(self) -> bool:
        """An image index / manifest list (its entries are manifests)."""
        return self.media_type in INDEX_MEDIA_TYPES

    @cached_property
    def document(self) -> dict[str, Any]:
        """The parsed JSON object."""
        try:
            document = json.loads(self.raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidManifestError(f"manifest {self.digest} is not JSON") from exc
        if not isinstance(document, dict):
            raise InvalidManifestError(f"manifest {self.digest} is not a JSON object")
        return document

    @cached_property
    def manifests(self) -> tuple[Descriptor, ...]:
        """The entries of an index; empty for an image manifest."""
        if not self.is_index:
            return ()
        entries = self.document.get("manifests")
        if not isinstance(entries, list):
            raise InvalidManifestError(f"index {self.digest} has no manifests list")
        return tuple(
            Descriptor.from_json(e, where=f"{self.digest} manifests[{i}]")
            for i, e in enumerate(entries)
        )

    @cached_property
    def config(self) -> Descriptor | None:
        """The config descriptor of an image manifest; None for an index."""
        if self.is_index:
            return None
        value = self.document.get("config")
        if value is None:
            raise InvalidManifestError(f"manifest {self.digest} has no config")
        return Descriptor.from_json(value, where=f"{self.digest} config")

    @cached_property
    def layers(self) -> tuple[Descriptor, ...]:
        """The layer descriptors of an image manifest; empty for an index."""
        if self.is_index:
            return ()
        entries = self.document.get("layers", [])
        if not isinstance(entries, list):
            raise InvalidManifestError(f"manifest {self.digest} layers is not a list")
        return tuple(
            Descriptor.from_json(e, where=f"{self.digest} layers[{i}]")
            for i, e in enumerate(entries)
        )


def detect_media_type(raw: bytes, content_type: str | None) -> str:
    """The manifest media type from the response, else from the document itself.

    Some registries serve manifests as ``application/json``; the ``mediaType``
    field, then the shape (``manifests`` vs ``config``), decide in that case.
    """
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared in MANIFEST_MEDIA_TYPES:
        return declared
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        document = None
    detected = declared
    if isinstance(document, dict):
        field_value = document.get("mediaType")
        if isinstance(field_value, str) and field_value:
            detected = field_value
        elif "manifests" in document:
            detected = OCI_INDEX
        elif "config" in document:
            detected = OCI_MANIFEST
    return detected

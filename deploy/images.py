"""Real OCI images without Docker: build an OCI layout, copy it into a registry.

``build_image`` writes an OCI image layout folder (``oci-layout``, ``index.json``,
``blobs/sha256/``) holding gzip tar layers of seeded random bytes (deterministic
per seed, incompressible), a config whose ``rootfs.diff_ids`` match them, and an
image manifest, or an image index with one manifest per platform. Layers are
streamed to disk, so images of hundreds of MiB need little memory.

``copy_to_registry`` and ``inspect_raw`` drive ``skopeo``, an independent OCI
client, so what tests seed and verify does not go through regflow's own client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regflow.errors import RegflowError

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# The tag under which ``cached_layout`` stores its single image.
CACHED_TAG = "image"
SKOPEO_TIMEOUT_SECONDS = 600.0

# Fixed timestamps keep every byte, and so every digest, a function of the seed.
_EPOCH = "2024-01-01T00:00:00Z"
_EPOCH_SECONDS = 1_704_067_200
_CHUNK_BYTES = 1 << 20
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK

# One layer is either one file of N bytes or several files of the given sizes.
LayerSizes = Sequence[int | Sequence[int]]


class ImageBuildError(RegflowError):
    """An OCI layout could not be written or read."""


class SkopeoError(RegflowError):
    """``skopeo`` failed; ``argv`` carries no secrets (credentials go in a file)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(
            f"skopeo exited with {returncode}: {stderr.strip()} (argv: {list(argv)})"
        )
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Platform:
    """An OCI platform (``linux/arm64/v8``)."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` as written by Docker (``linux/amd64``)."""
        parts = text.split("/")
        if len(parts) not in {2, 3} or not all(parts):
            raise ValueError(f"platform {text!r} is not os/architecture[/variant]")
        return cls(
            os=parts[0],
            architecture=parts[1],
            variant=parts[2] if len(parts) == 3 else None,  # noqa: PLR2004  # os/arch/variant
        )

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return base if self.variant is None else f"{base}/{self.variant}"

    def to_json(self) -> dict[str, str]:
        """The OCI ``platform`` object."""
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant is not None:
            data["variant"] = self.variant
        return data


DEFAULT_PLATFORM = Platform(os="linux", architecture="amd64")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """The OCI descriptor object."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its blob descriptor and the digest of the plain tar."""

    descriptor: Descriptor
    diff_id: str
    uncompressed_size: int


@dataclass(frozen=True)
class ImageManifest:
    """One single-platform image inside a build."""

    descriptor: Descriptor
    platform: Platform
    config: Descriptor
    layers: tuple[LayerBlob, ...]


@dataclass(frozen=True)
class BuiltImage:
    """What ``build_image`` wrote: the top-level descriptor and its manifests."""

    layout_dir: Path
    tag: str
    descriptor: Descriptor
    manifests: tuple[ImageManifest, ...]

    @property
    def digest(self) -> str:
        """Digest of the top-level manifest or index bytes."""
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        """Whether the top level is an image index (two or more platforms)."""
        return self.descriptor.media_type == OCI_INDEX

    @property
    def blob_bytes(self) -> int:
        """Total size of all layer and config blobs (what a push transfers)."""
        return sum(
            m.config.size + sum(layer.descriptor.size for layer in m.layers)
            for m in self.manifests
        )


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _blob_path(layout_dir: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    return layout_dir / "blobs" / algorithm / hex_digest


def _write_blob(layout_dir: Path, media_type: str, data: bytes) -> Descriptor:
    descriptor = Descriptor(media_type, sha256_digest(data), len(data))
    path = _blob_path(layout_dir, descriptor.digest)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return descriptor


class _LayerWriter:
    """Feeds tar bytes through gzip into a blob file, hashing both sides."""

    def __init__(self, sink: Callable[[bytes], object], compresslevel: int) -> None:
        self._sink = sink
        # wbits=31 is the gzip container; zlib writes mtime 0, so output is stable.
        self._compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
        self.diff = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.uncompressed = 0
        self.compressed = 0

    def write(self, data: bytes) -> None:
        self.diff.update(data)
        self.uncompressed += len(data)
        self._emit(self._compressor.compress(data))

    def finish(self) -> None:
        # End of archive: two zero blocks, then zero padding to a full record.
        end = 2 * _TAR_BLOCK
        end += (-(self.uncompressed + end)) % _TAR_RECORD
        self.write(bytes(end))
        self._emit(self._compressor.flush())

    def _emit(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.compressed += len(data)
            self._sink(data)


def _tar_header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = _EPOCH_SECONDS
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _write_layer(
    layout_dir: Path,
    file_sizes: Sequence[int],
    *,
    content_seed: str,
    directory: str,
    compresslevel: int,
) -> LayerBlob:
    """Stream one gzip tar layer of seeded random files into the blob store."""
    blobs = layout_dir / "blobs" / "sha256"
    fd, tmp_name = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as blob:
            writer = _LayerWriter(blob.write, compresslevel)
            writer.write(_tar_header(f"{directory}/", 0, directory=True))
            for index, size in enumerate(file_sizes):
                writer.write(_tar_header(f"{directory}/file-{index}.bin", size))
                rng = random.Random(f"{content_seed}/{index}")  # noqa: S311  # filler bytes, not secrets
                remaining = size
                while remaining:
                    chunk = min(remaining, _CHUNK_BYTES)
                    writer.write(rng.randbytes(chunk))
                    remaining -= chunk
                writer.write(bytes(-size % _TAR_BLOCK))
            writer.finish()
        digest = f"sha256:{writer.digest.hexdigest()}"
        tmp.replace(_blob_path(layout_dir, digest))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return LayerBlob(
        descriptor=Descriptor(OCI_LAYER_GZIP, digest, writer.compressed),
        diff_id=f"sha256:{writer.diff.hexdigest()}",
        uncompressed_size=writer.uncompressed,
    )


def _normalise_layers(layer_sizes: LayerSizes) -> list[list[int]]:
    layers = [[size] if isinstance(size, int) else list(size) for size in layer_sizes]
    for files in layers:
        if not files or any(size < 0 for size in files):
            raise ValueError(f"layer file sizes must be >= 0 and non-empty: {files}")
    return layers


def _normalise_platforms(platforms: Sequence[Platform | str] | None) -> list[Platform]:
    if not platforms:
        return [DEFAULT_PLATFORM]
    parsed = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"duplicate platforms in {[str(p) for p in parsed]}")
    return parsed


def _write_manifest(
    layout_dir: Path,
    platform: Platform,
    layers: list[list[int]],
    *,
    seed: int,
    compresslevel: int,
) -> ImageManifest:
    written = [
        _write_layer(
            layout_dir,
            files,
            content_seed=f"{seed}/{platform}/{index}",
            directory=f"regflow-seed/layer-{index}",
            compresslevel=compresslevel,
        )
        for index, files in enumerate(layers)
    ]
    config = {
        "created": _EPOCH,
        **platform.to_json(),
        "config": {"Labels": {"dev.regflow.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in written]},
        "history": [
            {"created": _EPOCH, "created_by": f"regflow seed layer {index}"}
            for index in range(len(written))
        ],
    }
    config_descriptor = _write_blob(layout_dir, OCI_CONFIG, _canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer.descriptor.to_json() for layer in written],
    }
    return ImageManifest(
        descriptor=_write_blob(layout_dir, OCI_MANIFEST, _canonical_json(manifest)),
        platform=platform,
        config=config_descriptor,
        layers=tuple(written),
    )


def _tag_in_layout(layout_dir: Path, tag: str, descriptor: Descriptor) -> None:
    """Point ``tag`` at ``descriptor`` in ``index.json``, keeping other tags."""
    index_path = layout_dir / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            entries = json.loads(index_path.read_bytes())["manifests"]
        except (ValueError, KeyError) as exc:
            raise ImageBuildError(f"unreadable {index_path}: {exc!r}") from exc
    entries = [
        e for e in entries if e.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    entries.append({**descriptor.to_json(), "annotations": {REF_NAME_ANNOTATION: tag}})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    tmp = index_path.with_name(".index.json.tmp")
    tmp.write_bytes(json.dumps(index, indent=2).encode())
    tmp.replace(index_path)


def build_image(
    layout_dir: Path,
    tag: str = "latest",
    *,
    layer_sizes: LayerSizes,
    platforms: Sequence[Platform | str] | None = None,
    seed: int = 0,
    compresslevel: int = 0,
) -> BuiltImage:
    """Write an image into the OCI layout at ``layout_dir`` under ``tag``.

    ``layer_sizes`` gives one entry per layer: an int (one file of that many
    bytes) or a list of ints (one file each). With two or more ``platforms``
    the tag points at an image index with one manifest per platform (each with
    its own layer contents); otherwise at a single manifest (default
    linux/amd64). Same arguments, same bytes, same digests. ``compresslevel``
    0 keeps gzip framing without spending CPU on incompressible data.

    Blocks on disk I/O proportional to the total size. Other tags already in
    the layout are kept. Raises ValueError for bad sizes or platforms and
    ImageBuildError for an unreadable existing layout.
    """
    layers = _normalise_layers(layer_sizes)
    wanted = _normalise_platforms(platforms)
    (layout_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_bytes(
        _canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
    )
    manifests = tuple(
        _write_manifest(
            layout_dir, platform, layers, seed=seed, compresslevel=compresslevel
        )
        for platform in wanted
    )
    if len(manifests) == 1:
        top = manifests[0].descriptor
    else:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**m.descriptor.to_json(), "platform": m.platform.to_json()}
                for m in manifests
            ],
        }
        top = _write_blob(layout_dir, OCI_INDEX, _canonical_json(index))
    _tag_in_layout(layout_dir, tag, top)
    return BuiltImage(
        layout_dir=layout_dir, tag=tag, descriptor=top, manifests=manifests
    )


def cached_layout(
    cache_dir: Path,
    *,
    layer_sizes: LayerSizes,
    platforms: Sequence[Platform | str] | None = None,
    seed: int = 0,
) -> Path:
    """A layout holding the image for these arguments as ``CACHED_TAG``.

    Built on first use in a folder named after the arguments and reused after
    that; a half-built folder is never visible (built aside, then renamed).
    """
    key_source = {
        "layers": _normalise_layers(layer_sizes),
        "platforms": [str(p) for p in _normalise_platforms(platforms)],
        "seed": seed,
    }
    key = hashlib.sha256(_canonical_json(key_source)).hexdigest()[:20]
    layout = cache_dir / key
    if (layout / "index.json").exists():
        return layout
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}-"))
    try:
        build_image(
            building,
            CACHED_TAG,
            layer_sizes=layer_sizes,
            platforms=platforms,
            seed=seed,
        )
        building.rename(layout)
    except OSError:
        # Someone else finished the same layout first; theirs is identical.
        if not (layout / "index.json").exists():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return layout


# -------------------------------------------------------------------------- skopeo


def _skopeo() -> str:
    binary = shutil.which("skopeo")
    if binary is None:
        raise SkopeoError(["skopeo"], 127, "skopeo is not installed (run `make setup`)")
    return binary


def _write_authfile(directory: Path, host: str, username: str, password: str) -> Path:
    """A containers-auth.json for ``host``, so no password appears in argv."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    path = directory / "auth.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"auths": {host: {"auth": token}}}, handle)
    return path


def _run_skopeo(args: Sequence[str], *, timeout: float) -> bytes:
    # The policy only matters for signed images; ours are local and unsigned.
    argv = [_skopeo(), "--insecure-policy", *args]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SkopeoError(argv, -1, f"timed out after {timeout} s") from exc
    if result.returncode != 0:
        raise SkopeoError(
            argv, result.returncode, result.stderr.decode("utf-8", errors="replace")
        )
    return result.stdout


def _reference(host: str, repository: str, reference: str) -> str:
    separator = "@" if ":" in reference else ":"
    return f"docker://{host}/{repository}{separator}{reference}"


def copy_to_registry(
    layout_dir: Path,
    tag: str,
    registry_host: str,
    repository: str,
    *,
    username: str | None = None,
    password: str | None = None,
    dest_tag: str | None = None,
    timeout: float = SKOPEO_TIMEOUT_SECONDS,
) -> str:
    """Copy ``tag`` of an OCI layout to ``registry_host/repository:dest_tag``.

    ``dest_tag`` defaults to ``tag``. Uses plain HTTP (no TLS verification),
    copies every platform of an index and keeps digests unchanged. Blocks
    until skopeo is done. Returns the digest of the pushed top-level manifest
    bytes. Raises SkopeoError (stderr included, credentials never).
    """
    with tempfile.TemporaryDirectory(prefix="regflow-skopeo-") as scratch:
        digest_file = Path(scratch) / "digest"
        args = [
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digest_file),
        ]
        if username is not None:
            authfile = _write_authfile(
                Path(scratch), registry_host, username, password or ""
            )
            args += ["--dest-authfile", str(authfile)]
        args += [
            f"oci:{layout_dir}:{tag}",
            _reference(registry_host, repository, dest_tag or tag),
        ]
        _run_skopeo(args, timeout=timeout)
        return digest_file.read_text(encoding="utf-8").strip()


def inspect_raw(
    host: str,
    repository: str,
    reference: str,
    creds: tuple[str, str] | None = None,
    *,
    timeout: float = SKOPEO_TIMEOUT_SECONDS,
) -> bytes:
    """The exact manifest (or index) bytes at ``host/repository`` by tag or digest.

    Plain HTTP. Raises SkopeoError when the manifest is missing or access fails.
    """
    with tempfile.TemporaryDirectory(prefix="regflow-skopeo-") as scratch:
        args = ["inspect", "--raw", "--tls-verify=false"]
        if creds is not None:
            authfile = _write_authfile(Path(scratch), host, *creds)
            args += ["--authfile", str(authfile)]
        args.append(_reference(host, repository, reference))
        return _run_skopeo(args, timeout=timeout)


async def copy_to_registry_async(
    layout_dir: Path,
    tag: str,
    registry_host: str,
    repository: str,
    *,
    username: str | None = None,
    password: str | None = None,
    dest_tag: str | None = None,
) -> str:
    """``copy_to_registry`` in a worker thread, for async callers."""
    return await asyncio.to_thread(
        copy_to_registry,
        layout_dir,
        tag,
        registry_host,
        repository,
        username=username,
        password=password,
        dest_tag=dest_tag,
    )


async def inspect_raw_async(
    host: str, repository: str, reference: str, creds: tuple[str, str] | None = None
) -> bytes:
    """``inspect_raw`` in a worker thread, for async callers."""
    return await asyncio.to_thread(inspect_raw, host, repository, reference, creds)

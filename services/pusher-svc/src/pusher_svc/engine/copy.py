"""The copy engine: one image (or index) from a source registry to a destination.

Children before parents, blobs before the manifests that name them, manifests byte
for byte (so digests stay equal), blobs streamed source to destination without
ever being held whole, each one verified against its digest on the way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from pusher_svc.engine.locations import BlobLocations, RegistryKey
from pusher_svc.engine.report import CopyReport
from regflow.events.common import TAG_RE
from regflow.oci import (
    IMAGE_CONFIG_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    InvalidManifestError,
    Manifest,
    Platform,
    RegistryClient,
    RegistryError,
    RegistryNameInvalidError,
    RetryPolicy,
    is_digest,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_BLOB_CONCURRENCY = 4
# An image config larger than this is not read for its platform (configs are a
# few KiB; the limit keeps a strange artifact from being pulled into memory).
MAX_CONFIG_BYTES = 1024 * 1024


class CopyEngine:
    """Copies images between registries with bounded parallelism per destination.

    One engine is meant to live as long as the service: the blob concurrency limit
    is shared by every copy it runs into the same destination host, so parallel
    pushes to one registry do not multiply the load on it. Use from one event loop.

    The engine also remembers which destination repository received which blob
    (per registry and credentials), so copying the same layers into another
    repository of that registry mounts them instead of uploading them again.

    Args:
        blob_concurrency: blob checks and transfers in flight per destination host.
        retry: the policy for restarting a whole blob transfer (a fresh source read
            and a fresh upload session) after a transient failure mid-stream. The
            clients' own policies retry the individual requests.
        locations: where blobs were seen; a fresh in-memory map if None.
    """

    def __init__(
        self,
        *,
        blob_concurrency: int = DEFAULT_BLOB_CONCURRENCY,
        retry: RetryPolicy | None = None,
        locations: BlobLocations | None = None,
    ) -> None:
        if blob_concurrency < 1:
            raise ValueError("blob_concurrency must be at least 1")
        self.blob_concurrency = blob_concurrency
        self.retry = retry if retry is not None else RetryPolicy(attempts=3)
        self.locations = locations if locations is not None else BlobLocations()
        self._limits: dict[str, asyncio.Semaphore] = {}

    # TODO(regflow#2): adapt the per-destination limit to 429s (halve, then grow)
    # and pause on Docker Hub's RateLimit-Remaining; today 429s are only retried.
    def _limit_for(self, dest: RegistryClient) -> asyncio.Semaphore:
        limit = self._limits.get(dest.host)
        if limit is None:
            limit = self._limits[dest.host] = asyncio.Semaphore(self.blob_concurrency)
        return limit

    async def copy_image(
        self,
        source: RegistryClient,
        source_repo: str,
        digest: str,
        dest: RegistryClient,
        dest_repo: str,
        *,
        tags: Sequence[str],
    ) -> CopyReport:
        """Copy the image ``source_repo@digest`` to ``dest_repo`` under every tag.

        Reads the top manifest by digest. An index has every child manifest copied
        first (children concurrently, each by digest); an image manifest has its
        config and layers copied, each blob skipped when the destination has it
        (a blob shared by two platforms is handled once), or mounted from another
        repository of the destination known to hold it. A manifest the
        destination already holds by digest has all its blobs, so they are counted
        as skipped without being checked one by one. Then the top manifest's exact
        bytes are PUT once per tag, one tag after the other (by digest when no tag
        is given), so the destination digest equals ``digest``.

        Names are validated before any request. On failure nothing is rolled back:
        blobs and child manifests already copied stay (they are content-addressed
        and harmless), tags are only written at the very end.

        Raises:
            RegistryNameInvalidError: a bad repository name, tag or digest.
            RegistryError: the classified failure of the source or destination;
                ``url`` says which registry it came from.
            InvalidManifestError: the source manifest is not a supported type.
        """
        started = time.monotonic()
        for tag in tags:
            if not TAG_RE.fullmatch(tag):
                raise RegistryNameInvalidError(
                    f"invalid tag {tag!r}", url=str(dest.base_url)
                )
        if not is_digest(digest):
            raise RegistryNameInvalidError(
                f"source reference must be a digest, got {digest!r}"
            )
        source_repo = source.repository(source_repo)
        dest_repo = dest.repository(dest_repo)

        log.info(
            "image copy started",
            source=f"{source.host}/{source_repo}@{digest}",
            destination=f"{dest.host}/{dest_repo}",
            tags=list(tags),
        )
        job = _CopyJob(
            source=source,
            source_repo=source_repo,
            dest=dest,
            dest_repo=dest_repo,
            limit=self._limit_for(dest),
            retry=self.retry,
            locations=self.locations,
        )
        top = await source.get_manifest(source_repo, digest)
        # TODO(regflow#2): copy referrers (signatures, SBOMs, attestations) via the
        # OCI 1.1 referrers API with the tag-schema fallback Distribution 2.8 needs.
        walked = await job.copy_manifest(top, platform=None, top_level=True)
        for tag in tags:
            await dest.put_manifest(dest_repo, tag, top.raw, top.media_type)
        if not tags and not walked.present:
            await dest.put_manifest(dest_repo, top.digest, top.raw, top.media_type)

        report = CopyReport(
            digest=top.digest,
            media_type=top.media_type,
            tags=tuple(tags),
            bytes_moved=job.bytes_moved,
            blobs_copied=job.blobs_copied,
            blobs_skipped=job.blobs_skipped,
            blobs_mounted=job.blobs_mounted,
            platforms=tuple(walked.platforms),
            layers=tuple(_unique(walked.layers)),
            duration=time.monotonic() - started,
        )
        log.info(
            "image copy finished",
            digest=report.digest,
            destination=f"{dest.host}/{dest_repo}",
            blobs_copied=report.blobs_copied,
            blobs_skipped=report.blobs_skipped,
            blobs_mounted=report.blobs_mounted,
        )
        return report


async def copy_image(
    source: RegistryClient,
    source_repo: str,
    digest: str,
    dest: RegistryClient,
    dest_repo: str,
    *,
    tags: Sequence[str],
    blob_concurrency: int = DEFAULT_BLOB_CONCURRENCY,
) -> CopyReport:
    """Copy one image with a one-off :class:`CopyEngine` (see its ``copy_image``)."""
    engine = CopyEngine(blob_concurrency=blob_concurrency)
    return await engine.copy_image(
        source, source_repo, digest, dest, dest_repo, tags=tags
    )


@dataclass
class _Walked:
    """What a manifest and its children contributed to the report."""

    present: bool
    platforms: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


@dataclass
class _CopyJob:
    """State of one copy: per-digest de-duplication and the counters."""

    source: RegistryClient
    source_repo: str
    dest: RegistryClient
    dest_repo: str
    limit: asyncio.Semaphore
    retry: RetryPolicy
    locations: BlobLocations
    bytes_moved: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    _settled: set[str] = field(default_factory=set)
    _blob_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def copy_manifest(
        self,
        manifest: Manifest,
        *,
        platform: Platform | None,
        top_level: bool,
        present: bool | None = None,
    ) -> _Walked:
        """Copy what ``manifest`` references, then (for children) the manifest itself.

        ``present`` is True when a parent index is already at the destination,
        which implies this manifest is too.
        """
        if manifest.media_type not in MANIFEST_MEDIA_TYPES:
            raise InvalidManifestError(
                f"manifest {manifest.digest} has unsupported media type "
                f"{manifest.media_type!r}"
            )
        if present is None:
            present = (
                await self.dest.head_manifest(self.dest_repo, manifest.digest)
                is not None
            )
        if manifest.is_index:
            walked = await self._copy_index(manifest, present=present)
        else:
            walked = await self._copy_image_manifest(
                manifest, platform=platform, top_level=top_level, present=present
            )
        if not top_level and not present:
            await self.dest.put_manifest(
                self.dest_repo, manifest.digest, manifest.raw, manifest.media_type
            )
        return walked

    async def _copy_index(self, index: Manifest, *, present: bool) -> _Walked:
        children = index.manifests

        async def copy_child(descriptor: Descriptor) -> _Walked:
            child = await self.source.get_manifest(self.source_repo, descriptor.digest)
            return await self.copy_manifest(
                child,
                platform=descriptor.platform,
                top_level=False,
                present=True if present else None,
            )

        results = await _run_all(copy_child(d) for d in children)
        walked = _Walked(present=present)
        for result in results:
            walked.platforms.extend(result.platforms)
            walked.layers.extend(result.layers)
        return walked

    async def _copy_image_manifest(
        self,
        manifest: Manifest,
        *,
        platform: Platform | None,
        top_level: bool,
        present: bool,
    ) -> _Walked:
        config = manifest.config
        assert config is not None  # an image manifest always has one (parsed above)
        blobs = [config, *manifest.layers]
        if present:
            for blob in blobs:
                if blob.digest not in self._settled and not blob.urls:
                    self._settled.add(blob.digest)
                    self.blobs_skipped += 1
                    self._remember(blob.digest)
        else:
            await _run_all(self._ensure_blob(blob) for blob in blobs)

        if platform is None and top_level:
            platform = await self._platform_from_config(config)
        walked = _Walked(present=present, layers=[d.digest for d in manifest.layers])
        if platform is not None and not platform.is_unknown:
            walked.platforms.append(str(platform))
        return walked

    async def _ensure_blob(self, blob: Descriptor) -> None:
        """Make sure the destination has ``blob``: skip it, or stream it over once."""
        if blob.urls:
            # A foreign / non-distributable layer: clients fetch it from its URLs,
            # registries do not hold it, and the source may not have it either.
            log.debug("foreign layer not copied", digest=blob.digest)
            return
        lock = self._blob_locks.setdefault(blob.digest, asyncio.Lock())
        async with lock:
            if blob.digest in self._settled:
                return
            async with self.limit:
                if await self.dest.blob_exists(self.dest_repo, blob.digest):
                    self.blobs_skipped += 1
                    log.debug("blob present", digest=blob.digest)
                elif await self._mount(blob):
                    self.blobs_mounted += 1
                    log.debug("blob mounted", digest=blob.digest)
                else:
                    await self.retry.run(
                        lambda: self._transfer(blob),
                        what=f"copy blob {blob.digest}",
                    )
                    self.blobs_copied += 1
                    self.bytes_moved += blob.size
                    log.debug("blob copied", digest=blob.digest, size=blob.size)
            self._settled.add(blob.digest)
            self._remember(blob.digest)

    @property
    def _registry_key(self) -> RegistryKey:
        return self.dest.host, self.dest.identity

    def _remember(self, digest: str) -> None:
        self.locations.remember(self._registry_key, digest, self.dest_repo)

    async def _mount(self, blob: Descriptor) -> bool:
        """Try a cross-repository mount from where the blob is known to be."""
        origin = self.locations.find(self._registry_key, blob.digest)
        if origin is None and self.source.host == self.dest.host:
            # Copying within one registry: the source repository holds it.
            origin = self.source_repo
        if origin is None or origin == self.dest_repo:
            return False
        return await self.dest.mount_blob(self.dest_repo, blob.digest, origin)

    async def _transfer(self, blob: Descriptor) -> None:
        async with self.source.open_blob(
            self.source_repo, blob.digest, size=blob.size
        ) as reader:
            await self.dest.upload_blob(
                self.dest_repo, blob.digest, reader.size, reader.chunks
            )

    async def _platform_from_config(self, config: Descriptor) -> Platform | None:
        """The os/architecture of a single image, read from its config blob."""
        if config.media_type not in IMAGE_CONFIG_MEDIA_TYPES:
            return None
        if config.size > MAX_CONFIG_BYTES:
            return None
        try:
            async with self.source.open_blob(
                self.source_repo, config.digest, size=config.size
            ) as reader:
                data = b"".join([chunk async for chunk in reader.chunks])
        except RegistryError as exc:
            # The copy itself went through; only the report loses the platform.
            log.warning(
                "image config unreadable for its platform",
                digest=config.digest,
                error=str(exc),
            )
            return None
        return Platform.from_json(_json_object(data))


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


async def _run_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; on the first failure cancel the rest and raise it.

    TaskGroup reports failures as an ExceptionGroup; callers of the engine want
    the classified registry error itself, so the first one is re-raised.
    """
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks.extend(group.create_task(coro) for coro in coros)
    except BaseExceptionGroup as failed:
        raise _first_leaf(failed) from None
    return [task.result() for task in tasks]


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    if isinstance(first, BaseExceptionGroup):
        return _first_leaf(first)
    return first

"""An async client for one registry's OCI distribution API (``/v2/``), on httpx.

Speaks exactly what a copy needs: ping, manifests by tag or digest (exact bytes),
blob existence, streamed blob reads and streamed monolithic uploads. Every failure
comes out as a classified :class:`~regflow.oci.errors.RegistryError`; transient
ones have already been retried under the client's :class:`RetryPolicy` where the
request is safe to repeat.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeVar

import httpx
import structlog

from regflow.events.common import REPOSITORY_RE, TAG_RE
from regflow.oci.auth import Credentials, RegistryAuth, TokenCache
from regflow.oci.digest import digest_of, is_digest, verified_chunks
from regflow.oci.errors import (
    InvalidManifestError,
    RegistryDigestMismatchError,
    RegistryError,
    RegistryNameInvalidError,
    RegistryRejectedError,
    raise_for_response,
    redact_url,
    translate_transport_error,
)
from regflow.oci.manifest import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    Manifest,
    detect_media_type,
)
from regflow.oci.retry import RetryPolicy

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=120.0)
# Source reads are joined into chunks of about this size before they are written
# to the destination: fewer, larger writes cost less per byte than 64 KiB ones.
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)
USER_AGENT = "regflow/0.1"
# A DELETE of an abandoned upload session is a courtesy; it must not hold up the
# error that caused it.
ABANDON_TIMEOUT = httpx.Timeout(5.0)

# Docker Hub's registry API lives on another host than its name.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# Every name Docker Hub's registry goes by; all of them speak on the API host.
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", DOCKER_HUB_API_HOST, "registry.hub.docker.com"}
)
_HTTPS_PORT_SUFFIX = ":443"


def is_docker_hub_host(host: str) -> bool:
    """Whether ``host`` is one of Docker Hub's names (any case, ``:443`` or not)."""
    return host.strip().lower().removesuffix(_HTTPS_PORT_SUFFIX) in DOCKER_HUB_ALIASES


@dataclass(frozen=True)
class ManifestHead:
    """What a HEAD on a manifest tells: its digest, media type and size."""

    digest: str
    media_type: str
    size: int | None


@dataclass
class BlobReader:
    """An open blob download: its size and its verified content, chunk by chunk.

    ``chunks`` may be iterated once; it raises
    :class:`~regflow.oci.errors.RegistryDigestMismatchError` in place of the last
    chunk when the content does not match the digest or size, and
    :class:`~regflow.oci.errors.RegistryUnreachableError` when the connection
    fails mid-way.
    """

    digest: str
    size: int
    chunks: AsyncIterator[bytes] = field(repr=False)


def registry_api_host(host: str) -> str:
    """The host that serves the ``/v2/`` API for a registry name."""
    return DOCKER_HUB_API_HOST if is_docker_hub_host(host) else host


class RegistryClient:
    """One registry's distribution API, with its credentials, auth state and retries.

    Use as an async context manager, or call :meth:`aclose`. ``http`` lets several
    clients share one connection pool; a shared client is not closed here. All
    methods are safe to call concurrently from one event loop.

    Args:
        host: ``host[:port]`` of the registry (``docker.io`` is mapped to its API host).
        credentials: username and password or token; None for anonymous access.
        insecure: speak plain HTTP, not HTTPS (and allow a plain-HTTP token realm).
        http: an httpx client to use instead of an own one.
        timeout: per-request timeouts (connect, each read and write, pool wait).
        retry: the retry policy for repeatable requests.
        token_cache: bearer tokens to share between clients; one of its own if None.
        chunk_size: about the size of the chunks a blob download yields.
    """

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not host or "/" in host or host != host.strip():
            raise RegistryNameInvalidError(
                f"registry host must be host[:port], got {host!r}"
            )
        self.host = registry_api_host(host)
        self.is_docker_hub = self.host == DOCKER_HUB_API_HOST
        self.base_url = httpx.URL(f"{'http' if insecure else 'https'}://{self.host}")
        self.retry = retry if retry is not None else RetryPolicy()
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._owns_http = http is None
        self._http = http if http is not None else self._new_http_client(timeout)
        # Who we are at this registry, for caches that must not mix accounts.
        self.identity = credentials.fingerprint() if credentials else ""
        self._auth = RegistryAuth(
            self.base_url,
            credentials,
            token_cache=token_cache,
            allow_http_realm=insecure,
        )

    @staticmethod
    def _new_http_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=timeout,
            limits=DEFAULT_LIMITS,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless it was passed in."""
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url})"

    # --- names -------------------------------------------------------------------

    def repository(self, name: str) -> str:
        """Validate a repository name; Docker Hub's official images get ``library/``.

        Raises:
            RegistryNameInvalidError: the name breaks the distribution grammar.
        """
        if len(name) > 255 or not REPOSITORY_RE.fullmatch(name):  # noqa: PLR2004 - spec limit
            raise RegistryNameInvalidError(
                f"invalid repository name {name!r}: lower-case components "
                "[a-z0-9] joined by '.', '_', '__' or '-', separated by '/'",
                url=str(self.base_url),
            )
        if self.is_docker_hub and "/" not in name:
            return f"library/{name}"
        return name

    def _reference(self, reference: str) -> str:
        if is_digest(reference) or TAG_RE.fullmatch(reference):
            return reference
        raise RegistryNameInvalidError(
            f"invalid tag or digest {reference!r}", url=str(self.base_url)
        )

    def _url(self, path: str) -> httpx.URL:
        return self.base_url.join(path)

    @staticmethod
    def _display(repository: str, reference: str) -> str:
        separator = "@" if is_digest(reference) else ":"
        return f"{repository}{separator}{reference}"

    # --- transport ---------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        request_timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            url,
            headers=headers,
            content=content,
            timeout=request_timeout or self._timeout,
        )
        try:
            return await self._http.send(
                request,
                auth=self._auth,
                stream=stream,
                follow_redirects=follow_redirects,
            )
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, what=what) from exc

    async def _retried(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        return await self.retry.run(operation, what=what)

    # --- API ---------------------------------------------------------------------

    async def ping(self) -> None:
        """Check that the registry answers ``/v2/`` and accepts our credentials.

        With token auth and no credentials, an anonymous token is asked for, as
        Docker does; a registry that refuses anonymous access then fails with
        :class:`~regflow.oci.errors.RegistryAuthError`.

        Raises:
            RegistryError: the classified failure (auth, unreachable, ...).
        """
        what = f"ping {self.host}"

        async def attempt() -> None:
            response = await self._send("GET", self._url("/v2/"), what=what)
            await raise_for_response(response, what=what)

        await self._retried(attempt, what)

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest's exact bytes by tag or digest.

        A digest reference is verified against the bytes received. Manifests over
        4 MiB are refused.

        Raises:
            RegistryNotFoundError: no such repository or manifest.
            RegistryDigestMismatchError: the bytes do not hash to the digest asked for.
            InvalidManifestError: the manifest is too large.
            RegistryError: any other classified failure.
        """
        repository = self.repository(repository)
        reference = self._reference(reference)
        what = f"get manifest {self._display(repository, reference)}"
        url = self._url(f"/v2/{repository}/manifests/{reference}")

        async def attempt() -> tuple[bytes, str | None]:
            response = await self._send(
                "GET", url, what=what, headers={"Accept": MANIFEST_ACCEPT}, stream=True
            )
            try:
                await raise_for_response(response, what=what)
                raw = await self._read_limited(response, what=what)
            finally:
                await response.aclose()
            return raw, response.headers.get("content-type")

        raw, content_type = await self._retried(attempt, what)
        media_type = detect_media_type(raw, content_type)
        if is_digest(reference):
            actual = digest_of(raw, reference.split(":", 1)[0])
            if actual != reference:
                raise RegistryDigestMismatchError(
                    f"{what}: the registry served content that hashes to {actual}",
                    expected=reference,
                    actual=actual,
                    url=redact_url(url),
                )
            digest = reference
        else:
            digest = digest_of(raw)
        return Manifest(raw=raw, media_type=media_type, digest=digest)

    async def _read_limited(self, response: httpx.Response, *, what: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                f"{what}: manifest of {declared} bytes exceeds the "
                f"{MAX_MANIFEST_BYTES} byte limit",
                url=redact_url(response.request.url),
            )
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_MANIFEST_BYTES:
                    raise InvalidManifestError(
                        f"{what}: manifest exceeds the {MAX_MANIFEST_BYTES} byte limit",
                        url=redact_url(response.request.url),
                    )
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, what=what) from exc
        return bytes(body)

    async def head_manifest(
        self, repository: str, reference: str
    ) -> ManifestHead | None:
        """Whether a manifest exists (None when not), and its digest and media type.

        Raises:
            RegistryError: any classified failure other than "not found".
        """
        repository = self.repository(repository)
        reference = self._reference(reference)
        what = f"check manifest {self._display(repository, reference)}"
        url = self._url(f"/v2/{repository}/manifests/{reference}")

        async def attempt() -> ManifestHead | None:
            response = await self._send(
                "HEAD", url, what=what, headers={"Accept": MANIFEST_ACCEPT}
            )
            if response.status_code == 404:  # noqa: PLR2004 - HTTP status
                return None
            await raise_for_response(response, what=what)
            digest = response.headers.get("docker-content-digest")
            if digest is None or not is_digest(digest):
                if not is_digest(reference):
                    # Without the header a tag's digest needs the bytes.
                    manifest = await self.get_manifest(repository, reference)
                    return ManifestHead(
                        manifest.digest, manifest.media_type, len(manifest.raw)
                    )
                digest = reference
            length = response.headers.get("content-length")
            media_type = response.headers.get("content-type", "").split(";", 1)[0]
            return ManifestHead(
                digest=digest,
                media_type=media_type.strip(),
                size=int(length) if length and length.isdigit() else None,
            )

        return await self._retried(attempt, what)

    async def put_manifest(
        self, repository: str, reference: str, raw: bytes, media_type: str
    ) -> str:
        """Store manifest bytes unchanged under a tag or digest; return the digest.

        The body goes out byte for byte with ``Content-Type: media_type``. The
        registry's ``Docker-Content-Digest`` answer is checked against the bytes.

        Raises:
            RegistryDigestMismatchError: ``reference`` is a digest of other bytes,
                or the registry reports another digest than the bytes have.
            RegistryError: any other classified failure (``MANIFEST_BLOB_UNKNOWN``
                when a referenced blob or child is missing comes as rejected).
        """
        repository = self.repository(repository)
        reference = self._reference(reference)
        what = f"put manifest {self._display(repository, reference)}"
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        algorithm = reference.split(":", 1)[0] if is_digest(reference) else "sha256"
        digest = digest_of(raw, algorithm)
        if is_digest(reference) and digest != reference:
            raise RegistryDigestMismatchError(
                f"{what}: the manifest bytes hash to {digest}",
                expected=reference,
                actual=digest,
                url=redact_url(url),
            )

        async def attempt() -> str | None:
            response = await self._send(
                "PUT", url, what=what, headers={"Content-Type": media_type}, content=raw
            )
            await raise_for_response(response, what=what)
            stored: str | None = response.headers.get("docker-content-digest")
            return stored

        stored = await self._retried(attempt, what)
        if stored and stored.split(":", 1)[0] == algorithm and stored != digest:
            raise RegistryDigestMismatchError(
                f"{what}: the registry stored the manifest as {stored}",
                expected=digest,
                actual=stored,
                url=redact_url(url),
            )
        return digest

    async def blob_exists(self, repository: str, digest: str) -> bool:
        """Whether the repository has the blob (HEAD).

        A redirect counts as "present" and is not followed: the registry only
        redirects to content it has, and a storage URL signed for GET may
        refuse a HEAD.

        Raises:
            RegistryError: any classified failure other than "not found".
        """
        repository = self.repository(repository)
        digest = self._digest(digest)
        what = f"check blob {repository}@{digest}"
        url = self._url(f"/v2/{repository}/blobs/{digest}")

        async def attempt() -> bool:
            response = await self._send("HEAD", url, what=what)
            if response.status_code == 404:  # noqa: PLR2004 - HTTP status
                return False
            if response.is_redirect:
                return True
            await raise_for_response(response, what=what)
            return True

        return await self._retried(attempt, what)

    def _digest(self, digest: str) -> str:
        if not is_digest(digest):
            raise RegistryNameInvalidError(f"not a sha256/sha512 digest: {digest!r}")
        return digest

    @asynccontextmanager
    async def open_blob(
        self, repository: str, digest: str, *, size: int | None = None
    ) -> AsyncIterator[BlobReader]:
        """Open a blob for streaming; the content is verified as it is read.

        Redirects (to object storage or a CDN) are followed; the Authorization
        header is not sent to another origin. ``size`` is the size the caller
        expects (from a descriptor); without it the ``Content-Length`` decides.
        Opening is retried on transient failures; reading is not (restart the
        whole transfer instead). The connection is released when the block exits.

        Raises:
            RegistryNotFoundError: the blob is not in the repository.
            RegistryDigestMismatchError: sizes disagree (on open) or the content
                does not match (while reading).
            RegistryError: any other classified failure.
        """
        repository = self.repository(repository)
        digest = self._digest(digest)
        what = f"read blob {repository}@{digest}"
        url = self._url(f"/v2/{repository}/blobs/{digest}")

        async def attempt() -> httpx.Response:
            response = await self._send(
                "GET",
                url,
                what=what,
                # The bytes must arrive as stored: they are what the digest names.
                headers={"Accept-Encoding": "identity"},
                stream=True,
                follow_redirects=True,
            )
            try:
                await raise_for_response(response, what=what)
            except BaseException:
                await response.aclose()
                raise
            return response

        response = await self._retried(attempt, what)
        try:
            length_header = response.headers.get("content-length")
            length = (
                int(length_header)
                if length_header and length_header.isdigit()
                else None
            )
            if size is not None and length is not None and length != size:
                raise RegistryDigestMismatchError(
                    f"{what}: registry announces {length} bytes, expected {size}",
                    expected=digest,
                    actual=f"size={length}",
                    url=redact_url(url),
                )
            known = size if size is not None else length
            if known is None:
                raise RegistryRejectedError(
                    f"{what}: the registry did not say how large the blob is",
                    url=redact_url(url),
                )
            chunks = self._blob_chunks(response, digest, known, what)
            try:
                yield BlobReader(digest=digest, size=known, chunks=chunks)
            finally:
                await chunks.aclose()
        finally:
            await response.aclose()

    async def _blob_chunks(
        self, response: httpx.Response, digest: str, size: int, what: str
    ) -> AsyncGenerator[bytes, None]:
        verified = verified_chunks(
            self._coalesced(response),
            digest=digest,
            size=size,
            url=redact_url(response.request.url),
        )
        try:
            async for chunk in verified:
                yield chunk
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, what=what) from exc
        finally:
            await verified.aclose()

    async def _coalesced(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        # Network reads arrive in 64 KiB pieces; joining them once into chunks of
        # about chunk_size makes the upload side cheaper per byte. (httpx's own
        # chunk_size re-buffering copies every byte three times.)
        pieces: list[bytes] = []
        pending = 0
        async for piece in response.aiter_bytes():
            pieces.append(piece)
            pending += len(piece)
            if pending >= self._chunk_size:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, pending = [], 0
        if pieces:
            yield b"".join(pieces)

    async def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        chunks: AsyncIterable[bytes],
    ) -> None:
        """Upload a blob from a stream in one request, never holding it whole.

        ``POST /blobs/uploads/`` opens a session (retried when transient); one
        streamed ``PUT <location>?digest=`` with ``Content-Length: size`` sends
        the content and commits it. The PUT is not retried here, since the
        stream cannot be replayed: callers restart the whole transfer with a
        fresh stream. On any failure the session is deleted (best effort).

        Raises:
            RegistryDigestMismatchError: the registry reports another digest.
            RegistryError: the classified failure of the session or the upload,
                or whatever the ``chunks`` iterator raised.
        """
        repository = self.repository(repository)
        digest = self._digest(digest)
        what = f"upload blob {repository}@{digest}"
        # TODO(regflow#2): fall back to chunked PATCH uploads (honouring Range and
        # OCI-Chunk-Min-Length) when a registry refuses large monolithic PUTs, as
        # ACR does above about 20 MB; Distribution, Hub, Quay, GHCR, ECR accept them.
        location = await self._retried(
            lambda: self._start_upload(repository, what), what
        )
        try:
            response = await self._send(
                "PUT",
                location.copy_merge_params({"digest": digest}),
                what=what,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
                content=chunks,
            )
            await raise_for_response(response, what=what)
        except BaseException:
            await self._abandon_upload(location, what)
            raise
        stored = response.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryDigestMismatchError(
                f"{what}: the registry stored the blob as {stored}",
                expected=digest,
                actual=stored,
                url=redact_url(location),
            )

    async def mount_blob(
        self, repository: str, digest: str, from_repository: str
    ) -> bool:
        """Link a blob from another repository of this registry, without moving it.

        Only a 201 answer means mounted. A 202 (the registry opened an upload
        instead: the blob is not there, or mounting is off) and any error
        (including a token service that refuses the extra scope) mean "not
        mounted": the caller uploads as usual. Never raises a registry error.
        """
        repository = self.repository(repository)
        from_repository = self.repository(from_repository)
        digest = self._digest(digest)
        what = f"mount blob {repository}@{digest} from {from_repository}"
        url = self._url(f"/v2/{repository}/blobs/uploads/").copy_merge_params(
            {"mount": digest, "from": from_repository}
        )
        try:
            response = await self._send("POST", url, what=what, content=b"")
            await raise_for_response(response, what=what)
        except RegistryError as exc:
            log.debug("blob mount failed", digest=digest, error=str(exc))
            return False
        if response.status_code == 201:  # noqa: PLR2004 - HTTP status
            return True
        location = response.headers.get("location")
        if location:
            await self._abandon_upload(response.request.url.join(location), what)
        return False

    async def _start_upload(self, repository: str, what: str) -> httpx.URL:
        url = self._url(f"/v2/{repository}/blobs/uploads/")
        response = await self._send("POST", url, what=what, content=b"")
        await raise_for_response(response, what=what)
        location = response.headers.get("location")
        if response.status_code != 202 or not location:  # noqa: PLR2004 - HTTP status
            raise RegistryRejectedError(
                f"{what}: expected 202 with a Location to open an upload",
                url=redact_url(url),
                status_code=response.status_code,
            )
        # Location may be relative to the request (the spec allows both).
        return response.request.url.join(location)

    async def _abandon_upload(self, location: httpx.URL, what: str) -> None:
        try:
            response = await self._send(
                "DELETE", location, what=what, request_timeout=ABANDON_TIMEOUT
            )
        except RegistryError as exc:
            log.debug(
                "upload session not deleted", url=redact_url(location), error=str(exc)
            )
            return
        log.debug(
            "upload session deleted",
            url=redact_url(location),
            status_code=response.status_code,
        )

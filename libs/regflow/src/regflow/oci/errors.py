"""Classified registry errors, and the translation of registry responses into them.

Every failure of a registry call surfaces as one of these, so callers decide on
the class alone (and on :attr:`RegistryError.reason` when they report it)::

    RegistryError                      reason            retried
    +-- RegistryAuthError              AUTH              no
    +-- RegistryNotFoundError          NOT_FOUND         no
    +-- RegistryNameInvalidError       INVALID_NAME      no
    +-- RegistryResponseError          REGISTRY_ERROR
    |   +-- RegistryRejectedError      (other 4xx)       no
    |   +-- RegistryUnavailableError   (5xx, 408, 429)   yes
    |   +-- RegistryDigestMismatchError                  no
    |   +-- InvalidManifestError                         no
    +-- RegistryUnreachableError       NETWORK           yes

The retried ones are also :class:`regflow.errors.TransientError`, the others
:class:`regflow.errors.PermanentError`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from regflow.errors import PermanentError, RegflowError, TransientError
from regflow.events import FailureReason

# Distribution error codes that name the failure better than the status does.
_NAME_INVALID_CODES = frozenset({"NAME_INVALID", "TAG_INVALID"})
_NOT_FOUND_CODES = frozenset({"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"})
_AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
# An upload session the registry lost (another replica, an expired or stale
# `_state`): starting over with a fresh session can succeed.
_UPLOAD_LOST_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Error bodies are read for their message only; a registry answering an error
# with megabytes is cut off rather than held in memory.
ERROR_BODY_LIMIT = 64 * 1024


class RegistryError(RegflowError):
    """A registry call failed; the subclass says how, ``reason`` says it for reports.

    Attributes:
        reason: the failure class reported in push results.
        status_code: the HTTP status, when the registry answered.
        registry_message: the registry's own ``code: message`` text, when it gave one.
        url: the request URL without credentials and query (query strings of
            pre-signed URLs are credentials).
    """

    reason: ClassVar[FailureReason] = FailureReason.REGISTRY_ERROR

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status_code: int | None = None,
        registry_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status_code = status_code
        self.registry_message = registry_message

    @property
    def is_transient(self) -> bool:
        """Whether retrying the same call later may succeed."""
        return isinstance(self, TransientError)

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        if self.registry_message:
            parts.append(f"registry said: {self.registry_message}")
        if self.url:
            parts.append(f"[{self.url}]")
        return " ".join(parts)


class RegistryAuthError(RegistryError, PermanentError):
    """Credentials were missing or rejected, or lack a permission (401/403)."""

    reason = FailureReason.AUTH


class RegistryNotFoundError(RegistryError, PermanentError):
    """The repository, manifest or blob does not exist (404)."""

    reason = FailureReason.NOT_FOUND


class RegistryNameInvalidError(RegistryError, PermanentError):
    """The repository name or tag is unacceptable (to us or to the registry)."""

    reason = FailureReason.INVALID_NAME


class RegistryResponseError(RegistryError):
    """The registry answered with an error that has no more specific class."""

    reason = FailureReason.REGISTRY_ERROR


class RegistryRejectedError(RegistryResponseError, PermanentError):
    """A 4xx that repeating the request will not change."""


class RegistryUnavailableError(RegistryResponseError, TransientError):
    """A 5xx, a timeout or rate limit answer, or a lost upload session.

    Attributes:
        retry_after: seconds the registry asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status_code: int | None = None,
        registry_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            url=url,
            status_code=status_code,
            registry_message=registry_message,
        )
        self.retry_after = retry_after


class RegistryDigestMismatchError(RegistryResponseError, PermanentError):
    """Content did not hash to (or was not the size of) the digest that names it."""

    def __init__(
        self, message: str, *, expected: str, actual: str, url: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.expected = expected
        self.actual = actual


class InvalidManifestError(RegistryResponseError, PermanentError):
    """A manifest that is not valid JSON of a known shape, or is too large."""


class RegistryUnreachableError(RegistryError, TransientError):
    """No answer: connection refused or reset, DNS, TLS or a timeout."""

    reason = FailureReason.NETWORK


def redact_url(url: httpx.URL | str) -> str:
    """``scheme://host[:port]/path``: no user info, no query, no fragment."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    return str(
        parsed.copy_with(username=None, password=None, query=None, fragment=None)
    )


def parse_error_body(body: bytes) -> str | None:
    """The ``code: message`` pairs of a distribution error body, or a short text."""
    if not body:
        return None
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for item in errors:
            if not isinstance(item, dict):
                continue
            code = str(item.get("code") or "").strip()
            message = str(item.get("message") or "").strip()
            parts.append(": ".join(p for p in (code, message) if p))
        return "; ".join(p for p in parts if p) or None
    # Token servers and some proxies answer {"details": ...} or {"message": ...}.
    if isinstance(document, dict):
        for key in ("details", "detail", "message", "error"):
            value = document.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def error_codes(body: bytes) -> frozenset[str]:
    """The ``errors[].code`` values of a distribution error body."""
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return frozenset()
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return frozenset()
    return frozenset(
        str(item["code"]).upper()
        for item in errors
        if isinstance(item, dict) and item.get("code")
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    url: str,
    what: str,
) -> RegistryError:
    """Turn an error answer into the matching :class:`RegistryError`.

    ``what`` names the operation for the message ("push manifest app:1.0").
    ``headers`` should be case-insensitive (``httpx.Headers``).
    """
    codes = error_codes(body)
    kind: type[RegistryError]
    if status_code in {401, 403} or (codes & _AUTH_CODES and status_code < 500):  # noqa: PLR2004 - HTTP statuses
        kind, label = RegistryAuthError, "access denied"
    elif codes & _NAME_INVALID_CODES:
        kind, label = RegistryNameInvalidError, "name or tag rejected"
    elif codes & _UPLOAD_LOST_CODES:
        kind, label = RegistryUnavailableError, "upload session lost"
    elif status_code == 404 or codes & _NOT_FOUND_CODES:  # noqa: PLR2004 - HTTP status
        kind, label = RegistryNotFoundError, "not found"
    elif status_code in _TRANSIENT_STATUSES or status_code >= 500:  # noqa: PLR2004 - HTTP status class
        kind, label = RegistryUnavailableError, "registry unavailable"
    else:
        kind, label = RegistryRejectedError, "request rejected"
    message = f"{what}: {label}"
    registry_message = parse_error_body(body)
    if kind is RegistryUnavailableError:
        return RegistryUnavailableError(
            message,
            url=url,
            status_code=status_code,
            registry_message=registry_message,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    return kind(
        message, url=url, status_code=status_code, registry_message=registry_message
    )


# TODO(regflow#2): only streamed responses are read through this cap; ping, HEAD,
# upload POST/PUT, manifest PUT and token responses read the whole body, so a
# hostile registry (or a test-connection target) can send a very large one.
async def read_error_body(response: httpx.Response) -> bytes:
    """Up to :data:`ERROR_BODY_LIMIT` bytes of a (possibly streamed) error answer."""
    try:
        return response.content[:ERROR_BODY_LIMIT]
    except httpx.ResponseNotRead:
        pass
    collected = bytearray()
    async for chunk in response.aiter_bytes():
        collected.extend(chunk)
        if len(collected) >= ERROR_BODY_LIMIT:
            break
    return bytes(collected[:ERROR_BODY_LIMIT])


async def raise_for_response(response: httpx.Response, *, what: str) -> None:
    """Raise the classified error for a non-2xx answer; return on success."""
    if response.is_success:
        return
    body = await read_error_body(response)
    raise classify_response(
        response.status_code,
        response.headers,
        body,
        url=redact_url(response.request.url),
        what=what,
    )


def translate_transport_error(exc: httpx.HTTPError, *, what: str) -> RegistryError:
    """The :class:`RegistryError` for an httpx failure that had no HTTP answer."""
    url: str | None
    try:
        url = redact_url(exc.request.url)
    except RuntimeError:  # httpx raises when the error carries no request
        url = None
    if isinstance(exc, httpx.TimeoutException):
        return RegistryUnreachableError(
            f"{what}: timed out ({type(exc).__name__})", url=url
        )
    if isinstance(exc, httpx.TransportError):
        detail = str(exc) or type(exc).__name__
        return RegistryUnreachableError(f"{what}: {detail}", url=url)
    # InvalidURL, stream misuse, too many redirects: nothing a retry fixes.
    return RegistryRejectedError(f"{what}: {exc}", url=url)

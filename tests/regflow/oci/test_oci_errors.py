import email.utils
import json

import httpx
import pytest

from regflow.errors import PermanentError, TransientError
from regflow.events import FailureReason
from regflow.oci.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNameInvalidError,
    RegistryNotFoundError,
    RegistryRejectedError,
    RegistryUnavailableError,
    RegistryUnreachableError,
    classify_response,
    parse_error_body,
    parse_retry_after,
    redact_url,
    translate_transport_error,
)

pytestmark = pytest.mark.unit

URL = "https://registry.example/v2/team/app/manifests/1.0"


def body(*errors: tuple[str, str]) -> bytes:
    """A distribution error body."""
    return json.dumps(
        {"errors": [{"code": c, "message": m, "detail": None} for c, m in errors]}
    ).encode()


def classify(
    status: int, content: bytes, headers: dict[str, str] | None = None
) -> RegistryError:
    """Classify with httpx's case-insensitive headers, as the client does."""
    return classify_response(
        status, httpx.Headers(headers or {}), content, url=URL, what="push"
    )


@pytest.mark.parametrize(
    ("status", "content", "kind", "reason"),
    [
        (
            401,
            body(("UNAUTHORIZED", "authentication required")),
            RegistryAuthError,
            FailureReason.AUTH,
        ),
        (
            403,
            body(("DENIED", "requested access to the resource is denied")),
            RegistryAuthError,
            FailureReason.AUTH,
        ),
        (
            404,
            body(("NAME_UNKNOWN", "repository name not known to registry")),
            RegistryNotFoundError,
            FailureReason.NOT_FOUND,
        ),
        (
            404,
            body(("MANIFEST_UNKNOWN", "manifest unknown")),
            RegistryNotFoundError,
            FailureReason.NOT_FOUND,
        ),
        (404, b"404 page not found\n", RegistryNotFoundError, FailureReason.NOT_FOUND),
        (
            400,
            body(("NAME_INVALID", "invalid repository name")),
            RegistryNameInvalidError,
            FailureReason.INVALID_NAME,
        ),
        (
            400,
            body(("TAG_INVALID", "manifest tag did not match URI")),
            RegistryNameInvalidError,
            FailureReason.INVALID_NAME,
        ),
        (
            400,
            body(("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")),
            RegistryRejectedError,
            FailureReason.REGISTRY_ERROR,
        ),
        (
            404,
            body(("BLOB_UPLOAD_INVALID", "blob upload invalid")),
            RegistryUnavailableError,
            FailureReason.REGISTRY_ERROR,
        ),
        (
            500,
            body(("UNKNOWN", "unknown error")),
            RegistryUnavailableError,
            FailureReason.REGISTRY_ERROR,
        ),
        (
            502,
            b"<html>Bad Gateway</html>",
            RegistryUnavailableError,
            FailureReason.REGISTRY_ERROR,
        ),
    ],
)
def test_classification_from_sample_bodies(
    status: int, content: bytes, kind: type[RegistryError], reason: FailureReason
) -> None:
    """Status and error codes pick the class; the class carries the report reason."""
    error = classify(status, content)
    assert type(error) is kind
    assert error.reason is reason
    assert error.status_code == status
    assert error.url == URL


def test_registry_message_keeps_every_code_and_message() -> None:
    """registry_message is the registry's own text, all errors joined."""
    error = classify(
        400,
        body(
            ("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
            ("MANIFEST_INVALID", "manifest invalid"),
        ),
    )
    assert error.registry_message == (
        "MANIFEST_BLOB_UNKNOWN: blob unknown to registry; "
        "MANIFEST_INVALID: manifest invalid"
    )
    assert "MANIFEST_BLOB_UNKNOWN" in str(error)
    assert "HTTP 400" in str(error)


def test_docker_hub_rate_limit_is_transient_with_retry_after() -> None:
    """Docker Hub's 429 TOOMANYREQUESTS is retried after the time it names."""
    error = classify(
        429,
        body(("TOOMANYREQUESTS", "You have reached your pull rate limit.")),
        {"Retry-After": "17"},
    )
    assert isinstance(error, RegistryUnavailableError)
    assert isinstance(error, TransientError)
    assert error.is_transient
    assert error.retry_after == 17.0


def test_ecr_missing_repository_is_not_found() -> None:
    """ECR's NAME_UNKNOWN for a repository never created is a permanent not-found."""
    error = classify(
        404,
        body(
            (
                "NAME_UNKNOWN",
                (
                    "The repository with name 'coreos/prometheus-operator' does "
                    "not exist in the registry with id '123456789012'"
                ),
            )
        ),
    )
    assert isinstance(error, RegistryNotFoundError)
    assert isinstance(error, PermanentError)
    assert not error.is_transient
    assert "coreos/prometheus-operator" in (error.registry_message or "")


def test_token_server_details_body_is_kept() -> None:
    """Token servers answer {"details": ...}; that text becomes the message."""
    assert parse_error_body(b'{"details":"incorrect username or password"}') == (
        "incorrect username or password"
    )
    assert parse_error_body(b"") is None
    assert parse_error_body(b"  plain text  ") == "plain text"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is delta seconds or an HTTP date; garbage is ignored."""
    assert parse_retry_after("120") == 120.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_transport_errors_are_unreachable_and_transient() -> None:
    """Connection failures and timeouts become NETWORK errors without credentials."""
    request = httpx.Request("GET", "https://user:pw@reg.example/v2/?token=x")
    error = translate_transport_error(
        httpx.ConnectError("connection refused", request=request), what="ping"
    )
    assert isinstance(error, RegistryUnreachableError)
    assert error.reason is FailureReason.NETWORK
    assert error.is_transient
    assert error.url == "https://reg.example/v2/"
    timeout = translate_transport_error(
        httpx.ReadTimeout("slow", request=request), what="ping"
    )
    assert isinstance(timeout, RegistryUnreachableError)


def test_redact_url_drops_user_info_and_query() -> None:
    """Pre-signed query strings and user info never appear in errors."""
    assert (
        redact_url("https://u:p@s3.example/bucket/blob?X-Amz-Signature=abc#f")
        == "https://s3.example/bucket/blob"
    )

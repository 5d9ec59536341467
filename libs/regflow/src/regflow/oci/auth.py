"""Registry authentication: credentials, challenges, the token flow and its cache.

A registry says how it wants to be authenticated in the ``WWW-Authenticate``
header of a 401. ``Basic`` means: send the credentials with every request.
``Bearer`` (Docker Hub, Quay, GHCR, ACR, GCR, Distribution with ``auth: token``)
means: trade the credentials at the realm for a short-lived token valid for a set
of scopes (``repository:<name>:pull,push``), then send that token.

:class:`RegistryAuth` runs this as an httpx auth flow. It remembers what each
registry asked for, so later requests carry the right header up front; that
matters for streamed uploads, whose body cannot be sent twice. Credentials and
tokens only ever go to the registry's own origin, and credentials to the realm.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from regflow.oci.errors import (
    RegistryAuthError,
    RegistryRejectedError,
    classify_response,
    parse_error_body,
    redact_url,
)

log = structlog.get_logger(__name__)

# The spec's default lifetime when a token response has no ``expires_in``.
DEFAULT_TOKEN_LIFETIME = 60.0
# A cached token is dropped this long before it expires (capped fraction of its
# lifetime), so a request never leaves with a token that dies on the way.
MAX_REFRESH_MARGIN = 30.0
REFRESH_MARGIN_FRACTION = 0.1
# Expired tokens and idle locks are swept out every this many stored tokens, so a
# cache shared by a long-running service does not grow without bound.
SWEEP_EVERY = 256

# Keys the credential fingerprints: stable within the process, useless outside it
# (a fingerprint that leaked could not be brute-forced back into a password).
_FINGERPRINT_KEY = secrets.token_bytes(32)


class Credentials(BaseModel):
    """A username and a password or token for a registry."""

    model_config = ConfigDict(frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr

    def basic_header(self) -> str:
        """The ``Authorization: Basic`` value for these credentials."""
        pair = f"{self.username}:{self.password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def fingerprint(self) -> str:
        """An identity for cache keys, stable within this process (never logged)."""
        material = f"{self.username}\0{self.password.get_secret_value()}".encode()
        return hmac.new(_FINGERPRINT_KEY, material, hashlib.sha256).hexdigest()


# --- challenges ------------------------------------------------------------------

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TCHAR})")
_PARAM_RE = re.compile(rf"\s*({_TCHAR})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s,]*)\s*(?:,|$)")
_SEPARATORS_RE = re.compile(r"[\s,]*")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: a scheme and its parameters."""

    scheme: str  # lower case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)  # keys lower case

    @property
    def realm(self) -> str | None:
        """Where tokens come from (Bearer) or the protection space (Basic)."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """The ``service`` to name in token requests."""
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The scopes the registry asked for (space-separated in one parameter)."""
        return self.params.get("scope", "").split()


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse every challenge in the given ``WWW-Authenticate`` header values.

    Handles several challenges per value, quoted values with commas and escapes,
    unquoted values and any case of scheme and parameter names. Malformed tails
    are dropped rather than raised: a challenge is a hint, not a contract.
    """
    challenges: list[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            separators = _SEPARATORS_RE.match(header, pos)
            if separators is not None:
                pos = separators.end()
            scheme = _SCHEME_RE.match(header, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(header, pos)
                if param is None:
                    break
                name, value = param.group(1).lower(), param.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params[name] = value
                pos = param.end()
            challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


# --- scopes ----------------------------------------------------------------------

ScopeItem = tuple[str, str, str]  # (resource type, resource name, action)

_REPOSITORY_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs|tags|referrers)/(?P<rest>.*)$"
)
_READ_METHODS = frozenset({"GET", "HEAD"})


def scopes_for_request(
    method: str, path: str, *, mount_from: str | None = None
) -> list[str]:
    """The scopes a distribution API request needs, derived from its path.

    Reads need ``pull``; writes need ``pull,push`` (the pull is what lets a
    registry check mounts and existing blobs); deleting a manifest or blob needs
    ``delete``. A cross-repository mount also needs ``pull`` on the repository it
    mounts from. Paths outside a repository (``/v2/``) need no scope.
    """
    match = _REPOSITORY_PATH_RE.match(path)
    if match is None:
        return []
    name = match.group("name")
    if method in _READ_METHODS:
        actions = "pull"
    elif method == "DELETE" and not match.group("rest").startswith("uploads/"):
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = [f"repository:{name}:{actions}"]
    if mount_from and mount_from != name:
        scopes.append(f"repository:{mount_from}:pull")
    return scopes


def _split_scope(scope: str) -> tuple[str, str, list[str]] | None:
    resource, sep, actions = scope.rpartition(":")
    kind, sep2, name = resource.partition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


def merge_scopes(required: Sequence[str], challenged: Sequence[str]) -> list[str]:
    """Union of two scope lists by resource, with every push scope first.

    Some token services only honour the first scope of a request, so the one that
    grants ``push`` goes first. Scopes that do not parse are kept verbatim.
    """
    resources: dict[tuple[str, str], list[str]] = {}
    verbatim: list[str] = []
    for scope in (*required, *challenged):
        parts = _split_scope(scope)
        if parts is None:
            if scope not in verbatim:
                verbatim.append(scope)
            continue
        kind, name, actions = parts
        merged = resources.setdefault((kind, name), [])
        merged.extend(a for a in actions if a not in merged)
    formatted = [
        (("push" not in actions), f"{kind}:{name}:{','.join(actions)}")
        for (kind, name), actions in resources.items()
    ]
    ordered = [text for _, text in sorted(formatted, key=lambda item: item[0])]
    return ordered + verbatim


def scope_items(scopes: Iterable[str]) -> frozenset[ScopeItem]:
    """The (type, name, action) triples of a scope list, for coverage checks."""
    items: set[ScopeItem] = set()
    for scope in scopes:
        parts = _split_scope(scope)
        if parts is None:
            items.add(("", scope, ""))
            continue
        kind, name, actions = parts
        items.update((kind, name, action) for action in actions)
    return frozenset(items)


# --- token cache -----------------------------------------------------------------


@dataclass
class _CachedToken:
    token: str = field(repr=False)
    expires_at: float


class TokenCache:
    """Bearer tokens per (registry, credentials, scope set), honouring their lifetime.

    A token found for a superset of the needed scopes is reused (a ``pull,push``
    token serves a pull). ``clock`` is injectable for tests; it must be monotonic.
    One cache may be shared by several clients on one event loop.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[
            tuple[str, str], dict[frozenset[ScopeItem], _CachedToken]
        ] = {}
        self._locks: dict[tuple[str, str, frozenset[ScopeItem]], asyncio.Lock] = {}
        self._puts = 0

    def get(
        self, registry: str, identity: str, needed: frozenset[ScopeItem]
    ) -> str | None:
        """A live token whose scopes cover ``needed``, or None."""
        entries = self._tokens.get((registry, identity))
        if not entries:
            return None
        now = self._clock()
        for scopes, cached in list(entries.items()):
            if cached.expires_at <= now:
                del entries[scopes]
            elif needed <= scopes:
                return cached.token
        return None

    def put(
        self,
        registry: str,
        identity: str,
        scopes: frozenset[ScopeItem],
        token: str,
        expires_in: float,
    ) -> None:
        """Store a token received now and valid for ``expires_in`` seconds."""
        margin = min(MAX_REFRESH_MARGIN, expires_in * REFRESH_MARGIN_FRACTION)
        entry = _CachedToken(token, self._clock() + expires_in - margin)
        self._tokens.setdefault((registry, identity), {})[scopes] = entry
        self._puts += 1
        if self._puts % SWEEP_EVERY == 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        for key, entries in list(self._tokens.items()):
            for scopes, cached in list(entries.items()):
                if cached.expires_at <= now:
                    del entries[scopes]
            if not entries:
                del self._tokens[key]
        for lock_key, lock in list(self._locks.items()):
            if not lock.locked():
                del self._locks[lock_key]

    def __len__(self) -> int:
        """The number of tokens held (expired ones included until swept)."""
        return sum(len(entries) for entries in self._tokens.values())

    def lock(
        self, registry: str, identity: str, scopes: frozenset[ScopeItem]
    ) -> asyncio.Lock:
        """The lock that makes concurrent fetches of one token a single request."""
        return self._locks.setdefault((registry, identity, scopes), asyncio.Lock())


# --- the httpx auth flow -----------------------------------------------------------


@dataclass
class _HostScheme:
    """What a registry asked for in its last challenge."""

    scheme: str
    realm: str | None = None
    service: str | None = None


class _TokenResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: str | None = None
    access_token: str | None = None
    expires_in: float | None = Field(default=None, gt=0)


def _replayable(request: httpx.Request) -> bool:
    # A streamed upload body is consumed by its first send; only in-memory bodies
    # (bytes, empty) can be sent again with new credentials.
    return isinstance(request.stream, httpx.ByteStream)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port if url.port is not None else default


class RegistryAuth(httpx.Auth):
    """httpx auth flow for one registry origin (Basic and Bearer token).

    Requests to any other origin (a redirect target, an upload URL elsewhere) go
    out untouched. A 401 from the registry is answered once: with Basic
    credentials, or with a token fetched from the challenge's realm for the
    request's scope merged with the challenged scopes. A second 401, or a 401 to a
    streamed request, is returned to the caller, who classifies it.

    Raises (out of the request): :class:`RegistryAuthError` when the token service
    rejects the credentials, or the realm is not HTTPS while credentials would be
    sent; other classified errors when the token service fails.
    """

    def __init__(
        self,
        registry_url: httpx.URL,
        credentials: Credentials | None,
        *,
        token_cache: TokenCache | None = None,
        allow_http_realm: bool = False,
    ) -> None:
        self._origin = _origin(registry_url)
        self._registry = registry_url.netloc.decode("ascii")
        self._credentials = credentials
        self._identity = credentials.fingerprint() if credentials else ""
        self._cache = token_cache if token_cache is not None else TokenCache()
        self._allow_http_realm = allow_http_realm
        self._scheme: _HostScheme | None = None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Attach what the registry wants; answer one 401 challenge."""
        if _origin(request.url) != self._origin:
            yield request
            return

        needed = scopes_for_request(
            request.method,
            request.url.path,
            mount_from=request.url.params.get("from")
            if "mount" in request.url.params
            else None,
        )
        scopes = needed
        sent_token: str | None = None
        for attempt in range(2):
            scheme = self._scheme
            if scheme is not None and scheme.scheme == "bearer":
                token = self._cached_token(scopes, sent_token)
                if token is None:
                    items = scope_items(scopes)
                    async with self._cache.lock(self._registry, self._identity, items):
                        token = self._cached_token(scopes, sent_token)
                        if token is None:
                            token_response = yield self._token_request(
                                scheme, scopes, request
                            )
                            token = await self._accept_token(token_response, scopes)
                request.headers["Authorization"] = f"Bearer {token}"
                sent_token = token
            elif scheme is not None and scheme.scheme == "basic" and self._credentials:
                request.headers["Authorization"] = self._credentials.basic_header()

            response = yield request

            challenge = self._answerable_challenge(
                request, response, retried=attempt > 0
            )
            if challenge is None:
                return
            if challenge.scheme == "basic":
                self._scheme = _HostScheme("basic")
            else:
                self._scheme = _HostScheme("bearer", challenge.realm, challenge.service)
            scopes = merge_scopes(needed, challenge.scopes)
            log.debug(
                "registry challenge",
                registry=self._registry,
                scheme=challenge.scheme,
                service=challenge.service,
            )

    def _cached_token(self, scopes: Sequence[str], sent: str | None) -> str | None:
        """A cached token for ``scopes``, unless it is the one just refused."""
        token = self._cache.get(self._registry, self._identity, scope_items(scopes))
        return None if token is None or token == sent else token

    def _answerable_challenge(
        self, request: httpx.Request, response: httpx.Response, *, retried: bool
    ) -> Challenge | None:
        """The challenge to answer with a second attempt, or None to stop here."""
        if (
            retried
            or response.status_code != 401  # noqa: PLR2004 - HTTP status
            or _origin(response.request.url) != self._origin
            or not _replayable(request)
        ):
            return None
        challenge = self._pick(response)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            sent_basic = self._scheme is not None and self._scheme.scheme == "basic"
            if self._credentials is None or sent_basic:
                return None
        return challenge

    @staticmethod
    def _pick(response: httpx.Response) -> Challenge | None:
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        for wanted in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == wanted and (
                    wanted == "basic" or challenge.realm
                ):
                    return challenge
        return None

    # TODO(regflow#2): the OAuth2 form of the token flow (POST realm with
    # grant_type=password or refresh_token) for identity tokens, which ACR and
    # some GCR setups need; today only the GET flow with Basic credentials is done.
    def _token_request(
        self, scheme: _HostScheme, scopes: Sequence[str], request: httpx.Request
    ) -> httpx.Request:
        realm = httpx.URL(scheme.realm or "")
        if realm.scheme not in {"http", "https"} or not realm.host:
            raise RegistryAuthError(
                f"registry {self._registry} named an unusable token realm",
                url=redact_url(realm) if realm.host else None,
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if scheme.service:
            params.append(("service", scheme.service))
        params.extend(("scope", scope) for scope in merge_scopes(scopes, ()))
        headers: dict[str, str] = {}
        if self._credentials is not None:
            if realm.scheme != "https" and not self._allow_http_realm:
                raise RegistryAuthError(
                    f"registry {self._registry} wants credentials sent to a "
                    "plain-HTTP token realm; refused (mark the registry insecure "
                    "to allow it)",
                    url=redact_url(realm),
                )
            params.append(("account", self._credentials.username))
            headers["Authorization"] = self._credentials.basic_header()
        return httpx.Request(
            "GET",
            realm.copy_merge_params(params),
            headers=headers,
            # A request built here has no client defaults: carry the timeouts over.
            extensions={"timeout": request.extensions.get("timeout", {})},
        )

    async def _accept_token(
        self, response: httpx.Response, scopes: Sequence[str]
    ) -> str:
        body = await response.aread()
        url = redact_url(response.request.url)
        if response.status_code in {401, 403}:
            raise RegistryAuthError(
                "token service rejected the credentials",
                url=url,
                status_code=response.status_code,
                registry_message=parse_error_body(body),
            )
        if not response.is_success:
            raise classify_response(
                response.status_code,
                response.headers,
                body,
                url=url,
                what="token request",
            )
        try:
            parsed = _TokenResponse.model_validate_json(body)
        except ValueError as exc:
            raise RegistryRejectedError(
                "token service answered without a usable token",
                url=url,
                status_code=response.status_code,
            ) from exc
        token = parsed.token or parsed.access_token
        if not token:
            raise RegistryRejectedError(
                "token service answered without a token",
                url=url,
                status_code=response.status_code,
            )
        lifetime = parsed.expires_in or DEFAULT_TOKEN_LIFETIME
        self._cache.put(
            self._registry, self._identity, scope_items(scopes), token, lifetime
        )
        log.debug("registry token issued", registry=self._registry, scopes=scopes)
        return token

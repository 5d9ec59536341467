"""A Distribution-compatible token server, and a way to serve small ASGI apps.

Registries with ``auth: token`` (Docker Hub, Quay, GHCR, ACR, GCR and Distribution
itself) send clients to a token server: ``GET <realm>?service=..&scope=..`` with
Basic credentials returns a JWT that grants actions per repository. This one
issues RS256 JWTs carrying their self-signed certificate in the ``x5c`` header,
which a Distribution 2.8 registry verifies against ``rootcertbundle``.

Users and what they may do are fixed at start; every token request is recorded
in :attr:`TokenServer.requests` so tests can assert on what the client asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deploy.stack import TokenAuth

LOOPBACK = "127.0.0.1"
_START_TIMEOUT_SECONDS = 10.0


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its URL.

    Blocks until the server accepts connections; stops it on exit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ASGI test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT_SECONDS)
        sock.close()


@dataclass(frozen=True)
class TokenUser:
    """A user of the token server and the actions granted on any repository."""

    password: str
    actions: frozenset[str] = frozenset({"pull", "push"})


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (or refused)."""

    username: str | None
    scopes: tuple[str, ...]
    status: int


@dataclass(frozen=True)
class SigningIdentity:
    """An RSA key and its self-signed certificate, which signs tokens (RS256).

    A registry trusts the tokens when ``cert_pem`` is in its ``rootcertbundle``:
    each token carries the certificate in its ``x5c`` header.
    """

    key_pem: bytes
    cert_pem: bytes
    cert_der_b64: str

    @classmethod
    def generate(cls, common_name: str) -> SigningIdentity:
        """A fresh 2048-bit key with a CA certificate valid from an hour ago."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        return cls(
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            cert_der_b64=base64.b64encode(
                cert.public_bytes(serialization.Encoding.DER)
            ).decode(),
        )

    def sign(self, claims: dict[str, Any]) -> str:
        """The claims as a JWT signed with this key, the certificate in ``x5c``."""
        return jwt.encode(
            claims,
            self.key_pem,
            algorithm="RS256",
            headers={"x5c": [self.cert_der_b64]},
        )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except ValueError:
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


@dataclass
class TokenServer:
    """A token server for one registry ``service``; start with :meth:`running`.

    Anonymous requests get a token without access (as Docker Hub's do for
    private repositories); wrong credentials get 401.
    """

    users: dict[str, TokenUser]
    workdir: Path
    service: str = "regflow-test-registry"
    issuer: str = "regflow-test-token-issuer"
    token_lifetime: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._identity = SigningIdentity.generate(self.issuer)
        self.cert_path = self.workdir / "token-cert.pem"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._identity.cert_pem)

    @property
    def realm(self) -> str:
        """The URL registries send clients to for tokens."""
        return f"{self.url}/token"

    def registry_auth(self) -> TokenAuth:
        """The ``auth: token`` settings for a registry that trusts this server."""
        return TokenAuth(
            realm=self.realm,
            service=self.service,
            issuer=self.issuer,
            rootcertbundle_path=self.cert_path,
        )

    @contextmanager
    def running(self) -> Iterator[TokenServer]:
        """Serve tokens until the block exits."""
        with serve_asgi(self._app()) as url:
            self.url = url
            yield self

    def _grant(self, user: TokenUser | None, scope: str) -> dict[str, Any] | None:
        resource, _, actions = scope.rpartition(":")
        kind, _, name = resource.partition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        allowed = user.actions if user is not None else frozenset()
        return {
            "type": kind,
            "name": name,
            "actions": [a for a in wanted if a in allowed],
        }

    def _issue(self, username: str | None, scopes: list[str]) -> str:
        user = self.users.get(username) if username else None
        access = [g for g in (self._grant(user, s) for s in scopes) if g is not None]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": username or "",
            "aud": self.service,
            "exp": now + self.token_lifetime,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return self._identity.sign(claims)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/token")
        async def token(request: Request) -> JSONResponse:
            scopes = request.query_params.getlist("scope")
            # Clients may send several scopes space-separated in one parameter.
            scopes = [part for scope in scopes for part in scope.split()]
            credentials = _basic_credentials(request.headers.get("authorization"))
            username = credentials[0] if credentials else None
            body: dict[str, Any]
            if request.query_params.get("service") != self.service:
                status, body = 400, {"details": "unknown service"}
            elif credentials is not None and (
                credentials[0] not in self.users
                or self.users[credentials[0]].password != credentials[1]
            ):
                status, body = 401, {"details": "incorrect username or password"}
            else:
                jwt_token = self._issue(username, scopes)
                status, body = (
                    200,
                    {
                        "token": jwt_token,
                        "access_token": jwt_token,
                        "expires_in": self.token_lifetime,
                        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                    },
                )
            self.requests.append(TokenRequest(username, tuple(scopes), status))
            return JSONResponse(body, status_code=status)

        return app

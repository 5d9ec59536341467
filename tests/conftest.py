"""Shared fixtures: real broker, Redis and registries from ``deploy.stack``.

Nothing starts unless a test asks for it: the broker and Redis once per
session on first use, registries per test. Workdirs (logs, registry storage)
live under pytest's ``tmp_path_factory`` so a failed run leaves them to read.
Registries with ``auth: token`` trust the token server of ``tests.support``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import count
from pathlib import Path
from typing import Literal, Protocol

import pytest
import redis
import redis.asyncio

from deploy.images import (
    CACHED_TAG,
    LayerSizes,
    Platform,
    cached_layout,
    copy_to_registry,
)
from deploy.stack import (
    BasicAuth,
    Registry,
    TokenAuth,
    ensure_redis,
    forget_prefix,
    start_broker,
    start_registry,
)
from tests.support.token_server import TokenServer, TokenUser

RegistryAuth = Literal["none", "basic"] | BasicAuth | TokenAuth


class RegistryFactory(Protocol):
    """Signature of the ``registry_factory`` fixture."""

    def __call__(
        self, auth: RegistryAuth = "none", *, name: str | None = None
    ) -> Registry:
        """Start a registry that is stopped after the test."""
        ...


class SeedImage:
    """What the ``seed_image`` fixture gives: puts a built image into a registry."""

    def __init__(self, image_cache: Path) -> None:
        self._image_cache = image_cache

    async def __call__(
        self,
        registry: Registry,
        repository: str,
        tag: str,
        layer_sizes: LayerSizes = (1024,),
        platforms: Sequence[Platform | str] | None = None,
        *,
        seed: int = 0,
        creds: tuple[str, str] | None = None,
    ) -> str:
        """Build and copy an image; return its manifest digest."""
        username, password = creds or (registry.username, registry.password)

        def build_and_copy() -> str:
            layout = cached_layout(
                self._image_cache,
                layer_sizes=layer_sizes,
                platforms=platforms,
                seed=seed,
            )
            return copy_to_registry(
                layout,
                CACHED_TAG,
                registry.host,
                repository,
                username=username,
                password=password,
                dest_tag=tag,
            )

        return await asyncio.to_thread(build_and_copy)


@pytest.fixture(scope="session")
def _stack_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs and state of the session's broker and Redis."""
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka_bootstrap(_stack_workdir: Path) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a Tansu broker shared by the session (memory storage).

    Topics outlive tests: use unique topic names and consumer group ids.
    """
    broker = start_broker(_stack_workdir)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_url(_stack_workdir: Path) -> Iterator[str]:
    """URL of the machine's Redis on 6379, or of one started for the session."""
    handle = ensure_redis(_stack_workdir)
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"regflow-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    forget_prefix(redis_url, prefix)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An async client (bytes in, bytes out) on the session's Redis."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """``registry_factory(auth="none"|"basic"|BasicAuth|TokenAuth)`` -> Registry.

    Each call starts a fresh registry with its own storage; all are stopped
    after the test. ``"basic"`` generates user ``regflow`` and a random password.
    """
    started: list[Registry] = []
    numbers = count(1)

    def factory(auth: RegistryAuth = "none", *, name: str | None = None) -> Registry:
        chosen: BasicAuth | TokenAuth | None
        if auth == "none":
            chosen = None
        elif auth == "basic":
            chosen = BasicAuth.generate()
        else:
            chosen = auth
        registry = start_registry(
            tmp_path / "stack", name or f"registry-{next(numbers)}", auth=chosen
        )
        started.append(registry)
        return registry

    try:
        yield factory
    finally:
        for registry in reversed(started):
            registry.stop()


@pytest.fixture(scope="session")
def _image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built OCI layouts, reused across tests that ask for the same image."""
    return tmp_path_factory.mktemp("images")


@pytest.fixture
def seed_image(_image_cache: Path) -> SeedImage:
    """An async callable that puts a built image into a registry; returns its digest.

    Call as ``await seed_image(registry, repository, tag, layer_sizes, platforms)``.
    Builds a real OCI image (an index when ``platforms`` lists two or more),
    copies it in with skopeo and returns the digest of the top-level manifest.
    Same sizes, platforms and ``seed`` give the same image and digest; pass a
    different ``seed`` for a different image. Uses the registry's basic
    credentials, or ``creds`` (e.g. for a token-auth registry).
    """
    return SeedImage(_image_cache)


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    """A running token server: alice may pull and push, bob may only pull.

    Passwords are ``alice-pw`` and ``bob-pw``; every token request it answers
    is in ``token_server.requests``.
    """
    server = TokenServer(
        users={
            "alice": TokenUser("alice-pw"),
            "bob": TokenUser("bob-pw", frozenset({"pull"})),
        },
        workdir=tmp_path / "token-server",
    )
    with server.running():
        yield server


@pytest.fixture
def token_registry(
    registry_factory: RegistryFactory, token_server: TokenServer
) -> Registry:
    """A registry that trusts the ``token_server``'s JWTs (``auth: token``)."""
    return registry_factory(token_server.registry_auth())

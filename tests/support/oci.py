"""Clients and checks on the test registries, shared by the OCI and copy tests.

Clients never retry, so a test sees the first failure a registry gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from pydantic import SecretStr

from deploy.images import inspect_raw_async
from regflow.oci import Credentials, RegistryClient, RetryPolicy, TokenCache

if TYPE_CHECKING:
    from deploy.stack import Registry


def client_as(
    registry: Registry,
    username: str | None,
    password: str = "",
    *,
    cache: TokenCache | None = None,
) -> RegistryClient:
    """A client of ``registry`` as the given user (None: anonymous)."""
    credentials = (
        Credentials(username=username, password=SecretStr(password))
        if username is not None
        else None
    )
    return RegistryClient(
        registry.host,
        credentials=credentials,
        insecure=True,
        retry=RetryPolicy.no_retries(),
        token_cache=cache,
    )


def client_for(registry: Registry, password: str | None = None) -> RegistryClient:
    """A client with the registry's own credentials (or another password)."""
    return client_as(registry, registry.username, password or registry.password or "")


def creds_of(registry: Registry) -> tuple[str, str] | None:
    """The registry's basic credentials for skopeo, if it has any."""
    if registry.username is None:
        return None
    return registry.username, registry.password or ""


async def digest_at(
    registry: Registry,
    repository: str,
    reference: str,
    creds: tuple[str, str] | None = None,
) -> str:
    """Digest of the manifest bytes at the reference, as skopeo reads them.

    Reads with ``creds``, or else the registry's own credentials.
    """
    raw = await inspect_raw_async(
        registry.host, repository, reference, creds or creds_of(registry)
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """The data as a one-chunk stream."""
    yield data

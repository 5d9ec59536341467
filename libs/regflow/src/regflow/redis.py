"""Redis access: one client factory and the key naming every module shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import overload

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regflow.errors import TransientError


class RedisKeys:
    """Builds keys under one prefix, so stacks and test runs can share a server."""

    def __init__(self, prefix: str) -> None:
        if not prefix or prefix != prefix.strip() or prefix.endswith(":"):
            msg = f"invalid Redis key prefix {prefix!r}"
            raise ValueError(msg)
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        """``<prefix>:part1:part2...``."""
        return ":".join((self.prefix, *parts))


def create_redis(url: str) -> Redis:
    """A client for ``url``; values come back as bytes (callers decode JSON)."""
    return Redis.from_url(url, decode_responses=False, health_check_interval=30)


@overload
def as_text(value: bytes | str) -> str: ...
@overload
def as_text(value: None) -> None: ...
@overload
def as_text(value: bytes | str | None) -> str | None: ...
def as_text(value: bytes | str | None) -> str | None:
    """A Redis reply value as text: UTF-8 bytes decoded, str and None unchanged."""
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def redis_errors(action: str) -> AsyncIterator[None]:
    """Raise TransientError (from the original) when Redis is unavailable.

    ``action`` says what was being done, for the message: "recording image
    metadata". Other Redis errors (a wrong type, a script error) are bugs and
    pass through unchanged.
    """
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OutOfMemoryError) as exc:
        raise TransientError(f"Redis unavailable while {action}: {exc}") from exc

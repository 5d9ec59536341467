"""Translating Redis outages into regflow's retryable error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regflow.errors import TransientError


@asynccontextmanager
async def redis_errors(action: str) -> AsyncIterator[None]:
    """Raise TransientError (from the original) when Redis is unavailable."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OutOfMemoryError) as exc:
        raise TransientError(f"Redis unavailable while {action}: {exc}") from exc

"""Redis access: one client factory and the key naming every module shares."""

from __future__ import annotations

from redis.asyncio import Redis


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

"""Reading candidate images for a recommendation from Redis."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from cache_svc.records.accounts import AccountRegistryStore
from cache_svc.records.layout import CacheKeys
from cache_svc.records.model import ImageRecord, decode_hash, from_millis
from cache_svc.selection.rule import IndexedImage, Recommendation, recommend
from regflow.redis import redis_errors


class RecommendationReader:
    """Looks up the branch indexes and image hashes a recommendation needs."""

    def __init__(self, redis: Redis, keys: CacheKeys, *, scan_limit: int = 8) -> None:
        self._redis = redis
        self._keys = keys
        self._accounts = AccountRegistryStore(redis, keys)
        # Newest entries read per branch: more than one, because an entry whose
        # image hash has expired is skipped.
        self._scan_limit = scan_limit

    async def recommend(
        self,
        *,
        account_id: str,
        repository: str,
        platform: str,
        branch: str | None,
        default_branch: str,
    ) -> Recommendation:
        """The recommendation for one build; empty when nothing matches.

        ``platform`` must already be normalized. Read-only; at most three round
        trips. Raises TransientError when Redis is unavailable.
        """
        on_branch: list[IndexedImage] = []
        if branch is not None and branch != default_branch:
            on_branch = await self.newest_on_branch(
                account_id, repository, platform, branch
            )
        on_default = await self.newest_on_branch(
            account_id, repository, platform, default_branch
        )
        caching_registry = await self._accounts.caching_registry(account_id)
        return recommend(
            branch=branch,
            default_branch=default_branch,
            on_branch=on_branch,
            on_default_branch=on_default,
            caching_registry=caching_registry,
        )

    async def newest_on_branch(
        self, account_id: str, repository: str, platform: str, branch: str
    ) -> list[IndexedImage]:
        """The newest images built on ``branch``, newest first (expired skipped)."""
        index = self._keys.branch_index(account_id, repository, platform, branch)
        async with redis_errors("reading a branch index"):
            reply: list[Any] = await self._redis.zrange(
                index, 0, self._scan_limit - 1, desc=True, withscores=True
            )
            entries = [(_text(member), float(score)) for member, score in reply]
            if not entries:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for digest, _ in entries:
                    pipe.hgetall(self._keys.image(account_id, repository, digest))
                hashes = await pipe.execute()
        images = []
        for (_, score), raw in zip(entries, hashes, strict=True):
            if not raw:
                continue  # expired image metadata: skip; the index entry ages out
            images.append(
                IndexedImage(
                    record=ImageRecord.from_hash(decode_hash(raw)),
                    branch=branch,
                    built_at=from_millis(int(score)),
                )
            )
        return images


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

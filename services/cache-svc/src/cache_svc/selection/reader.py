"""Reading candidate images for a recommendation from Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from cache_svc.records.accounts import caching_registry_of
from cache_svc.records.layout import CacheKeys
from cache_svc.records.model import ImageRecord, decode_hash, from_millis
from cache_svc.selection.rule import IndexedImage, Recommendation, recommend
from regflow.redis import as_text, redis_errors

# Index entries of one branch: (digest, built_at score), newest first.
_Entries = list[tuple[str, float]]


class RecommendationReader:
    """Looks up the branch indexes and image hashes a recommendation needs."""

    def __init__(self, redis: Redis, keys: CacheKeys, *, scan_limit: int = 8) -> None:
        self._redis = redis
        self._keys = keys
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

        ``platform`` must already be normalized. Read-only; at most two round
        trips (the branch indexes with the account's caching registry, then the
        image hashes they name; none when the indexes are empty). Not a snapshot:
        an image expiring in between is skipped. Raises TransientError when Redis
        is unavailable.
        """
        branches = [default_branch]
        if branch is not None and branch != default_branch:
            branches.append(branch)
        async with redis_errors("reading cache recommendations"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in branches:
                    index = self._keys.branch_index(
                        account_id, repository, platform, name
                    )
                    pipe.zrange(
                        index, 0, self._scan_limit - 1, desc=True, withscores=True
                    )
                pipe.hgetall(self._keys.account(account_id))
                *index_replies, account = await pipe.execute()
            entries = [_entries(reply) for reply in index_replies]
            records = await self._records(account_id, repository, entries)
        found = {
            name: _indexed(name, branch_entries, records)
            for name, branch_entries in zip(branches, entries, strict=True)
        }
        return recommend(
            branch=branch,
            default_branch=default_branch,
            on_branch=found.get(branch, []) if branch is not None else [],
            on_default_branch=found[default_branch],
            caching_registry=caching_registry_of(decode_hash(account)),
        )

    async def _records(
        self, account_id: str, repository: str, entries: Sequence[_Entries]
    ) -> dict[str, ImageRecord]:
        """The image hashes of every indexed digest, in one round trip."""
        digests = list(dict.fromkeys(d for found in entries for d, _ in found))
        if not digests:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(self._keys.image(account_id, repository, digest))
            hashes = await pipe.execute()
        return {
            digest: ImageRecord.from_hash(decode_hash(raw))
            for digest, raw in zip(digests, hashes, strict=True)
            # An empty hash has expired: skip it; its index entry ages out.
            if raw
        }


def _entries(reply: list[Any]) -> _Entries:
    return [(as_text(member), float(score)) for member, score in reply]


def _indexed(
    branch: str, entries: _Entries, records: dict[str, ImageRecord]
) -> list[IndexedImage]:
    """The branch's images newest first, those without a hash left out."""
    return [
        IndexedImage(
            record=records[digest], branch=branch, built_at=from_millis(int(score))
        )
        for digest, score in entries
        if digest in records
    ]

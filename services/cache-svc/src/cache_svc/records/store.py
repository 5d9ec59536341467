"""Recording image metadata from build steps and push results (layout: .layout)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from cache_svc.records.layout import CacheKeys, normalize_platform
from cache_svc.records.model import REF_FIELD, decode_hash, to_millis
from regflow.errors import TransientError
from regflow.events import ImageRef, PushResult, PushSucceeded, StepCompleted
from regflow.redis import redis_errors

log = structlog.get_logger(__name__)

# Concurrent writers to one image are rare (a build and its pushes); this many
# optimistic retries in a row means something is wrong, and the event is retried.
_MAX_WATCH_RETRIES: Final = 16

Merge = Callable[[dict[str, str]], dict[str, str]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ImageStore:
    """Writes image hashes and branch indexes; every write is one transaction.

    Both writers merge into what is stored with "newest wins" rules and then
    (re)index every known (platform, branch) pair, so the result does not depend
    on the order of events and replaying an event changes nothing.
    """

    def __init__(
        self,
        redis: Redis,
        keys: CacheKeys,
        *,
        branch_index_size: int = 64,
        retention: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._index_size = branch_index_size
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._clock = clock

    async def record_build(
        self, account_id: str, step: StepCompleted, built_at: datetime
    ) -> bool:
        """Record a successful build step's image; False if already past retention.

        Blocks on Redis only. Raises TransientError when Redis is unavailable or
        the image is contended beyond the retry budget; nothing is written then.
        """
        built = to_millis(built_at)
        branch = step.branch or ""
        this_build = (built, step.build_id, step.step_name)

        def merge(current: dict[str, str]) -> dict[str, str]:
            fields = _identity(account_id, step.image)
            builds = _json_object(current.get("builds"))
            if branch:
                builds[branch] = max(int(builds.get(branch, 0)), built)
            fields["builds"] = json.dumps(builds, sort_keys=True)
            stored_build = (
                int(current.get("built_at") or 0),
                current.get("build_id", ""),
                current.get("step_name", ""),
            )
            if this_build >= stored_build:
                fields |= {
                    "built_at": str(built),
                    "branch": branch,
                    "revision": step.revision or "",
                    "pipeline_id": step.pipeline_id,
                    "build_id": step.build_id,
                    "step_name": step.step_name,
                }
            fields["platforms"] = _merge_platforms(current, step.platforms)
            return fields

        return await self._apply(account_id, step.image, merge)

    async def record_push(
        self, account_id: str, result: PushResult, pushed_at: datetime
    ) -> bool:
        """Record a successful push's references, layers and platforms.

        Failed results and results without a destination are not recorded
        (returns False), nor are results already past retention. Raises
        TransientError like :meth:`record_build`.
        """
        outcome = result.outcome
        if not isinstance(outcome, PushSucceeded) or result.destination is None:
            return False
        registry = result.destination.registry
        pushed = to_millis(pushed_at)

        def merge(current: dict[str, str]) -> dict[str, str]:
            fields = _identity(account_id, result.source)
            for reference in outcome.references:
                stored = _json_object(current.get(REF_FIELD + reference))
                if pushed >= int(stored.get("pushed_at", 0)):
                    fields[REF_FIELD + reference] = json.dumps(
                        {
                            "registry": registry,
                            "pushed_at": pushed,
                            "digest": outcome.digest,
                        },
                        sort_keys=True,
                    )
            if pushed >= int(current.get("pushed_at") or 0):
                fields["pushed_at"] = str(pushed)
                fields["media_type"] = outcome.media_type
                fields["layers"] = json.dumps(outcome.layers)
            fields["platforms"] = _merge_platforms(current, outcome.platforms)
            return fields

        return await self._apply(account_id, result.source, merge)

    async def _apply(self, account_id: str, image: ImageRef, merge: Merge) -> bool:
        key = self._keys.image(account_id, image.repository, image.digest)
        async with (
            redis_errors("recording image metadata"),
            self._redis.pipeline(transaction=True) as pipe,
        ):
            for _ in range(_MAX_WATCH_RETRIES):
                try:
                    await pipe.watch(key)
                    current = decode_hash(await pipe.hgetall(key))
                    fields = merge(current)
                    merged = current | fields
                    now = to_millis(self._clock())
                    expires = _newest_time(merged) + self._retention_ms
                    if expires <= now:
                        # Leaving the pipeline's context resets it (and unwatches).
                        log.debug("image past retention; not recorded", key=key)
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    pipe.hset(key, mapping=_encodable(fields))
                    _extend_expiry(pipe, key, expires)
                    self._index(pipe, account_id, image, merged, now)
                    await pipe.execute()
                except WatchError:
                    continue
                else:
                    return True
        raise TransientError(f"image {key} kept changing while being recorded")

    def _index(
        self,
        pipe: Pipeline,
        account_id: str,
        image: ImageRef,
        merged: dict[str, str],
        now: int,
    ) -> None:
        """Queue the index writes for every known (platform, branch) pair."""
        platforms = json.loads(merged.get("platforms") or "[]")
        for branch, built in _json_object(merged.get("builds")).items():
            expires = int(built) + self._retention_ms
            if expires <= now:
                continue
            for platform in platforms:
                index = self._keys.branch_index(
                    account_id, image.repository, platform, branch
                )
                pipe.zadd(index, {image.digest: int(built)}, gt=True)
                pipe.zremrangebyrank(index, 0, -(self._index_size + 1))
                _extend_expiry(pipe, index, expires)


def _encodable(fields: dict[str, str]) -> dict[FieldT, EncodableT]:
    # redis-py's Mapping parameter is invariant in its key type; widen it.
    return dict(fields.items())


def _identity(account_id: str, image: ImageRef) -> dict[str, str]:
    return {
        "account": account_id,
        "repository": image.repository,
        "digest": image.digest,
        "source": image.reference,
    }


def _extend_expiry(pipe: Pipeline, key: str, expires_ms: int) -> None:
    # NX sets it on a new key; GT then only ever moves it later. Together: the
    # expiry becomes max(current, expires_ms) without a read.
    pipe.pexpireat(key, expires_ms, nx=True)
    pipe.pexpireat(key, expires_ms, gt=True)


def _newest_time(fields: dict[str, str]) -> int:
    return max(int(fields.get("built_at") or 0), int(fields.get("pushed_at") or 0))


def _merge_platforms(current: dict[str, str], platforms: list[str]) -> str:
    known = set(json.loads(current.get("platforms") or "[]"))
    known.update(p for p in map(normalize_platform, platforms) if p is not None)
    return json.dumps(sorted(known))


def _json_object(text: str | None) -> dict[str, int | str]:
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        return {}
    return value

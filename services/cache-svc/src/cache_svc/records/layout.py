"""Where cache-svc keeps image metadata in Redis, and how keys are spelled.

All keys live under ``<prefix>:cache``. Free-form key parts (account, platform,
branch) have ``%`` and ``:`` percent-encoded (``%25``, ``%3A``) so a part can
never be mistaken for a separator; repositories cannot contain ``:`` and the
digest is always the last part. Times are epoch milliseconds, as decimal text.

``<prefix>:cache:image:<account>:<repository>:<digest>``  HASH, one per image
    (``repository`` and ``digest`` are those of the image the build produced in
    the internal registry; push results are matched to it by their source)

    ============== =============================================================
    account        account id
    repository     internal repository (the step's ``image.repository``)
    digest         internal manifest digest
    source         ``<internal registry>/<repository>@<digest>``
    built_at       time of the newest successful build step of this digest
    branch         that build's branch ("" when the build had none)
    revision       that build's commit ("" when unknown)
    pipeline_id    that build's pipeline
    build_id       that build's id
    step_name      that build's step
    builds         JSON object: branch -> newest built_at on that branch
    platforms      JSON array, sorted: os/arch[/variant], from the step and from
                   push results (union)
    pushed_at      time of the newest successful push of this image
    media_type     manifest media type, from the newest push result
    layers         JSON array of layer digests, from the newest push result
    ref:<ref>      JSON ``{"registry", "pushed_at", "digest"}`` per pushed
                   reference ``domain/repository:tag``; ``pushed_at`` is the
                   newest push of that reference. Recommendations pin it as
                   ``domain/repository@<digest>`` (the tag may move).
    ============== =============================================================

    Expires ``retention`` after the newest of its build and push times.

``<prefix>:cache:branch:<account>:<repository>:<platform>:<branch>``  ZSET
    Members are digests, scored by ``built_at`` of their build on that branch;
    only the newest N (setting ``branch_index_size``, 64) are kept. Expires
    ``retention`` after its newest score. An image is indexed once both a
    branch (from a build step) and a platform (from the step or a push result)
    are known, whichever event arrives last.

``<prefix>:cache:account:<account>``  HASH
    ``version`` (last applied registry change) and ``caching_registry`` (name,
    "" for none), from the registry-changes topic.

Every event is applied as one MULTI/EXEC under WATCH of the image hash (or one
Lua script for the account hash). Values are derived only from the event and the
stored state, with "newest wins" merges, so replaying an event changes nothing.
"""

from __future__ import annotations

from typing import Final

from regflow.redis import RedisKeys

UNKNOWN_PLATFORM_PARTS: Final = frozenset({"unknown"})
_ARM64_DEFAULT_VARIANT: Final = "linux/arm64/v8"


def key_part(text: str) -> str:
    """``text`` safe to use between ``:`` separators."""
    return text.replace("%", "%25").replace(":", "%3A")


def normalize_platform(platform: str) -> str | None:
    """``platform`` in the one spelling keys use, or None for no real platform.

    Lower-cased and trimmed; ``linux/arm64/v8`` is ``linux/arm64`` (v8 is arm64's
    default variant, as containerd treats it); ``unknown/unknown`` (attestation
    manifests in buildx indexes) and empty values are no platform.
    """
    value = platform.strip().lower()
    if value == _ARM64_DEFAULT_VARIANT:
        value = "linux/arm64"
    parts = value.split("/")
    if not value or set(parts) <= UNKNOWN_PLATFORM_PARTS:
        return None
    return value


class CacheKeys:
    """Builds the cache-svc keys under one Redis prefix."""

    def __init__(self, keys: RedisKeys) -> None:
        self._keys = keys

    def image(self, account_id: str, repository: str, digest: str) -> str:
        """The HASH of one image."""
        return self._keys.key(
            "cache", "image", key_part(account_id), repository, digest
        )

    def branch_index(
        self, account_id: str, repository: str, platform: str, branch: str
    ) -> str:
        """The ZSET of one branch's images for one platform."""
        return self._keys.key(
            "cache",
            "branch",
            key_part(account_id),
            repository,
            key_part(platform),
            key_part(branch),
        )

    def account(self, account_id: str) -> str:
        """The HASH of one account's registry settings."""
        return self._keys.key("cache", "account", key_part(account_id))

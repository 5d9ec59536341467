"""The cache recommendation rule: pure logic over recorded images.

Rule (hard filters first, then order):

* Only images of the same account, repository and platform are considered (the
  reader only looks in that platform's branch indexes; architectures never mix).
  Only successful build steps are ever recorded, so every image qualifies.
* First candidate: the newest image built on the requested branch.
* Second candidate: the newest image built on the default branch, when it is a
  different image (digest) and the requested branch is not the default branch.
  With no image on the branch it is the only candidate.
* Nothing found: no candidates and no references (never an error).

"Newest" is by build time on that branch, ties broken by digest so the answer is
stable. Each candidate lists every reference it can be pulled by, all pinned by
digest (``domain/repository@sha256:...``): a tag may have moved to a newer image
since the push, and pulling it would not give the image whose digest and
revision the candidate reports. A repository pushed under several tags is one
pinned reference, which keeps the tags it was pushed under as information.
References in the account's caching registry come first, then other pushed
references newest push first, and last the image in the internal registry
(where the build put it; always there, possibly garbage-collected), unless a
pushed reference already names it. The top-level ``references`` hold the first
reference of each candidate, in candidate order, ready to pass to
``--cache-from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cache_svc.records.model import ImageRecord, PushedReference


class Match(StrEnum):
    """Why an image was chosen."""

    BRANCH = "branch"  # newest on the requested branch
    DEFAULT_BRANCH = "default_branch"  # newest on the default branch


@dataclass(frozen=True)
class IndexedImage:
    """An image as found in one branch index: the record and its build there."""

    record: ImageRecord
    branch: str
    built_at: datetime


@dataclass(frozen=True)
class CandidateReference:
    """One way to pull a candidate, pinned by digest.

    ``registry`` is None for the internal one. ``tags`` are the tags the image
    was pushed under there (sorted; information only, they may have moved since),
    and ``pushed_at`` the newest of those pushes.
    """

    reference: str
    registry: str | None
    pushed_at: datetime | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """One recommended image, with what a caller needs to judge and pull it."""

    match: Match
    digest: str
    branch: str
    built_at: datetime
    revision: str | None
    pipeline_id: str | None
    build_id: str | None
    platforms: tuple[str, ...]
    references: tuple[CandidateReference, ...]


@dataclass(frozen=True)
class Recommendation:
    """Ordered candidates and the one reference per candidate to use first."""

    candidates: tuple[Candidate, ...] = ()

    @property
    def references(self) -> list[str]:
        """The first reference of each candidate, in order."""
        return [c.references[0].reference for c in self.candidates if c.references]


def recommend(
    *,
    branch: str | None,
    default_branch: str,
    on_branch: Sequence[IndexedImage],
    on_default_branch: Sequence[IndexedImage],
    caching_registry: str | None,
) -> Recommendation:
    """Apply the rule (module docstring) to the images found on both branches."""
    chosen: list[tuple[Match, IndexedImage]] = []
    if branch is not None and branch != default_branch:
        newest = _newest(on_branch)
        if newest is not None:
            chosen.append((Match.BRANCH, newest))
    fallback = _newest(on_default_branch)
    if fallback is not None and all(
        fallback.record.digest != image.record.digest for _, image in chosen
    ):
        matched = Match.BRANCH if branch == default_branch else Match.DEFAULT_BRANCH
        chosen.append((matched, fallback))
    return Recommendation(
        candidates=tuple(
            _candidate(match, image, caching_registry) for match, image in chosen
        )
    )


def _newest(images: Sequence[IndexedImage]) -> IndexedImage | None:
    return max(images, key=lambda i: (i.built_at, i.record.digest), default=None)


def _candidate(
    match: Match, image: IndexedImage, caching_registry: str | None
) -> Candidate:
    record = image.record
    ranked = sorted(
        record.references,
        key=lambda r: (
            r.registry != caching_registry or caching_registry is None,
            -r.pushed_at.timestamp(),
            r.reference,
        ),
    )
    # Tags of one repository collapse into one pinned reference, ranked by its
    # best-ranked push.
    by_pinned: dict[str, list[PushedReference]] = {}
    for pushed in ranked:
        by_pinned.setdefault(pushed.pinned, []).append(pushed)
    references = [
        CandidateReference(
            reference=pinned,
            registry=group[0].registry,
            pushed_at=max(r.pushed_at for r in group),
            tags=tuple(sorted({r.tag for r in group if r.tag is not None})),
        )
        for pinned, group in by_pinned.items()
    ]
    if record.source not in by_pinned:
        references.append(
            CandidateReference(reference=record.source, registry=None, pushed_at=None)
        )
    return Candidate(
        match=match,
        digest=record.digest,
        branch=image.branch,
        built_at=image.built_at,
        revision=record.revision,
        pipeline_id=record.pipeline_id,
        build_id=record.build_id,
        platforms=record.platforms,
        references=tuple(references),
    )

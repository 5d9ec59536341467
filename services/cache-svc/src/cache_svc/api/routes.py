"""HTTP API: cache recommendations for a build about to start.

Every recommended reference is pinned by digest, so what a build pulls is the
image the candidate describes, even after its tags have moved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

from cache_svc.records.layout import CacheKeys, normalize_platform
from cache_svc.selection import Candidate, Recommendation, RecommendationReader
from regflow.errors import TransientError
from regflow.events.common import REPOSITORY_PATTERN
from regflow.service import get_context

log = structlog.get_logger(__name__)

# os/arch[/variant]; case and arm64/v8 are normalized after validation.
PLATFORM_PATTERN: Final = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)?$"
_BRANCH_MAX_LENGTH: Final = 255

router = APIRouter(prefix="/v1", tags=["cache"])


class ReferenceOut(BaseModel):
    """One pullable reference of a candidate, pinned by digest.

    ``registry`` is null for the internal registry; ``tags`` are the tags the
    image was pushed under there, for information only (tags move).
    """

    reference: str
    registry: str | None
    pushed_at: datetime | None
    tags: list[str]


class CandidateOut(BaseModel):
    """One recommended image."""

    match: str
    digest: str
    branch: str
    built_at: datetime
    revision: str | None
    pipeline_id: str | None
    build_id: str | None
    platforms: list[str]
    references: list[ReferenceOut]

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateOut:
        """The wire form of a candidate."""
        return cls(
            match=candidate.match.value,
            digest=candidate.digest,
            branch=candidate.branch,
            built_at=candidate.built_at,
            revision=candidate.revision,
            pipeline_id=candidate.pipeline_id,
            build_id=candidate.build_id,
            platforms=list(candidate.platforms),
            references=[
                ReferenceOut(
                    reference=r.reference,
                    registry=r.registry,
                    pushed_at=r.pushed_at,
                    tags=list(r.tags),
                )
                for r in candidate.references
            ],
        )


class RecommendationOut(BaseModel):
    """Digest-pinned references for ``--cache-from`` in order, and why each."""

    references: list[str]
    candidates: list[CandidateOut]

    @classmethod
    def of(cls, recommendation: Recommendation) -> RecommendationOut:
        """The wire form of a recommendation."""
        return cls(
            references=recommendation.references,
            candidates=[CandidateOut.of(c) for c in recommendation.candidates],
        )


def get_reader(request: Request) -> RecommendationReader:
    """FastAPI dependency: a reader on the running service's Redis."""
    context = get_context(request)
    return RecommendationReader(context.redis, CacheKeys(context.keys))


@router.get(
    "/accounts/{account_id}/cache-recommendations",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "Redis is unavailable"}
    },
)
async def cache_recommendations(
    *,
    account_id: Annotated[str, Path(min_length=1, max_length=128)],
    repository: Annotated[
        str,
        Query(
            pattern=REPOSITORY_PATTERN, max_length=255, description="Image repository"
        ),
    ],
    platform: Annotated[
        str, Query(pattern=PLATFORM_PATTERN, description="os/arch[/variant]")
    ],
    reader: Annotated[RecommendationReader, Depends(get_reader)],
    branch: Annotated[
        str | None, Query(min_length=1, max_length=_BRANCH_MAX_LENGTH)
    ] = None,
    default_branch: Annotated[
        str, Query(min_length=1, max_length=_BRANCH_MAX_LENGTH)
    ] = "main",
) -> RecommendationOut:
    """Images to use as build cache: same branch first, then the default branch.

    An empty list (200) when nothing matches; callers should treat any other
    status as "no recommendation" and build without cache.
    """
    normalized = normalize_platform(platform)
    if normalized is None:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["query", "platform"],
                    "msg": f"{platform!r} is not a concrete platform",
                    "type": "value_error",
                }
            ],
        )
    try:
        recommendation = await reader.recommend(
            account_id=account_id,
            repository=repository,
            platform=normalized,
            branch=branch,
            default_branch=default_branch,
        )
    except TransientError as exc:
        log.exception("cache recommendation failed")
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="image metadata store unavailable; build without cache",
        ) from exc
    log.debug(
        "cache recommendation",
        repository=repository,
        platform=normalized,
        branch=branch,
        candidates=len(recommendation.candidates),
    )
    return RecommendationOut.of(recommendation)

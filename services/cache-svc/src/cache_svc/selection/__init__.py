"""Choosing cache images for a build: the rule and its Redis reader."""

from cache_svc.selection.reader import RecommendationReader
from cache_svc.selection.rule import (
    Candidate,
    CandidateReference,
    IndexedImage,
    Match,
    Recommendation,
    recommend,
)

__all__ = [
    "Candidate",
    "CandidateReference",
    "IndexedImage",
    "Match",
    "Recommendation",
    "RecommendationReader",
    "recommend",
]

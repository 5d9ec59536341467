"""Value types shared by several event payloads."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The OCI digest grammar, restricted to the algorithms registries accept.
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$"
Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]

# OCI distribution spec: repository name components and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
Repository = Annotated[
    str, StringConstraints(pattern=REPOSITORY_PATTERN, max_length=255)
]
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]

REPOSITORY_RE = re.compile(REPOSITORY_PATTERN)
TAG_RE = re.compile(TAG_PATTERN)


class Provider(StrEnum):
    """The kinds of registry an operator can connect."""

    DOCKERHUB = "dockerhub"
    ECR = "ecr"
    GCR = "gcr"
    GAR = "gar"
    ACR = "acr"
    QUAY = "quay"
    ARTIFACTORY = "artifactory"
    GHCR = "ghcr"
    OTHER = "other"


class FrozenModel(BaseModel):
    """Immutable payload model that ignores fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ImageRef(FrozenModel):
    """An image by digest in a registry (for builds: the internal registry)."""

    registry: str = Field(
        min_length=1, description="Registry host[:port], e.g. registry.internal:5000"
    )
    repository: Repository
    digest: Digest

    @property
    def reference(self) -> str:
        """``host/repository@digest``."""
        return f"{self.registry}/{self.repository}@{self.digest}"


class BuildContext(FrozenModel):
    """Which build a push belongs to, carried from step to command to result."""

    pipeline_id: str
    build_id: str
    step_name: str
    branch: str | None = None
    revision: str | None = None

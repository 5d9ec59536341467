"""Image metadata as stored in the image hash, decoded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from regflow.redis import as_text

REF_FIELD: Final = "ref:"


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def split_reference(reference: str) -> tuple[str, str | None]:
    """``(domain/repository, tag or None)`` of ``domain/repository[:tag][@digest]``.

    A ``:`` before the last ``/`` belongs to the domain's port, not a tag.
    """
    name = reference.split("@", 1)[0]
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :]
    return name, None


@dataclass(frozen=True)
class PushedReference:
    """One reference an image was pushed under (``domain/repository:tag``)."""

    reference: str
    registry: str
    pushed_at: datetime
    digest: str

    @property
    def pinned(self) -> str:
        """``domain/repository@digest``: what was pushed, however the tag moves."""
        return f"{split_reference(self.reference)[0]}@{self.digest}"

    @property
    def tag(self) -> str | None:
        """The tag it was pushed under (it may point elsewhere by now)."""
        return split_reference(self.reference)[1]


@dataclass(frozen=True)
class ImageRecord:
    """Everything recorded about one image (one internal digest)."""

    account_id: str
    repository: str
    digest: str
    source: str
    built_at: datetime | None = None
    branch: str | None = None
    revision: str | None = None
    pipeline_id: str | None = None
    build_id: str | None = None
    step_name: str | None = None
    builds: Mapping[str, datetime] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()
    media_type: str | None = None
    layers: tuple[str, ...] = ()
    references: tuple[PushedReference, ...] = ()

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> ImageRecord:
        """Decode the stored hash (see :mod:`cache_svc.records.layout`)."""
        built_at = fields.get("built_at")
        builds = json.loads(fields.get("builds") or "{}")
        references = []
        for name, value in fields.items():
            if name.startswith(REF_FIELD):
                ref = json.loads(value)
                references.append(
                    PushedReference(
                        reference=name.removeprefix(REF_FIELD),
                        registry=ref["registry"],
                        pushed_at=from_millis(int(ref["pushed_at"])),
                        digest=ref["digest"],
                    )
                )
        return cls(
            account_id=fields["account"],
            repository=fields["repository"],
            digest=fields["digest"],
            source=fields["source"],
            built_at=from_millis(int(built_at)) if built_at else None,
            branch=fields.get("branch") or None,
            revision=fields.get("revision") or None,
            pipeline_id=fields.get("pipeline_id") or None,
            build_id=fields.get("build_id") or None,
            step_name=fields.get("step_name") or None,
            builds={b: from_millis(int(t)) for b, t in builds.items()},
            platforms=tuple(json.loads(fields.get("platforms") or "[]")),
            media_type=fields.get("media_type") or None,
            layers=tuple(json.loads(fields.get("layers") or "[]")),
            references=tuple(sorted(references, key=lambda r: r.reference)),
        )


def decode_hash(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash reply as text."""
    return {as_text(k): as_text(v) for k, v in raw.items()}

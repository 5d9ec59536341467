"""What one image copy did."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CopyReport:
    """The outcome of a successful copy.

    Attributes:
        digest: digest of the top-level manifest, equal at source and destination.
        media_type: its media type (an image manifest or an index).
        tags: the destination tags that now point at ``digest``.
        bytes_moved: blob bytes uploaded; blobs already present are not counted.
        blobs_copied: distinct blobs uploaded.
        blobs_skipped: distinct blobs the destination repository already had.
        blobs_mounted: distinct blobs linked from another repository of the
            destination registry (cross-repository mount), not uploaded.
        platforms: ``os/arch[/variant]`` of each image, in index order.
        layers: distinct layer digests over all images, in manifest order.
        duration: wall-clock seconds.
    """

    digest: str
    media_type: str
    tags: tuple[str, ...]
    bytes_moved: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    platforms: tuple[str, ...]
    layers: tuple[str, ...]
    duration: float

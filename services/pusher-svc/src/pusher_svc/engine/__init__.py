"""The copy engine: images from one registry to another, digests unchanged."""

from pusher_svc.engine.copy import DEFAULT_BLOB_CONCURRENCY, CopyEngine, copy_image
from pusher_svc.engine.locations import BlobLocations
from pusher_svc.engine.report import CopyReport

__all__ = [
    "DEFAULT_BLOB_CONCURRENCY",
    "BlobLocations",
    "CopyEngine",
    "CopyReport",
    "copy_image",
]

"""Image metadata in Redis: layout, records, and the writers."""

from cache_svc.records.accounts import AccountRegistryStore
from cache_svc.records.layout import CacheKeys, normalize_platform
from cache_svc.records.model import ImageRecord, PushedReference
from cache_svc.records.store import ImageStore

__all__ = [
    "AccountRegistryStore",
    "CacheKeys",
    "ImageRecord",
    "ImageStore",
    "PushedReference",
    "normalize_platform",
]

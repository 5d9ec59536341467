"""cache-svc's HTTP API."""

from cache_svc.api.routes import get_reader, router

__all__ = ["get_reader", "router"]

"""Settings every service shares, read from ``REGFLOW_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every regflow process needs: broker, Redis, logging and its HTTP port.

    Services subclass this and add their own fields; all of them are read from
    the environment with the ``REGFLOW_`` prefix (``REGFLOW_REDIS_URL`` and so on).
    """

    model_config = SettingsConfigDict(env_prefix="REGFLOW_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Real Kafka supports idempotent producers and should use them; the local
    # Tansu broker does not (local-infra.md), so the stack turns this off.
    kafka_idempotent_producer: bool = True
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every key regflow writes starts with this, so several stacks (or test
    # runs) can share one Redis without seeing each other.
    redis_prefix: str = "regflow"

    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # Registry hosts spoken to over plain HTTP instead of HTTPS, like Docker's
    # insecure-registries list. Comma-separated ``host[:port]`` values; see
    # is_insecure_registry for how they match.
    insecure_registries: str = ""

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    def insecure_registry_hosts(self) -> frozenset[str]:
        """The entries of ``insecure_registries`` as written (not lower-cased).

        Membership in this set is not how entries match: use
        :meth:`is_insecure_registry`.
        """
        return frozenset(
            h.strip() for h in self.insecure_registries.split(",") if h.strip()
        )

    def is_insecure_registry(self, host: str) -> bool:
        """Whether the registry at ``host`` (``host[:port]``) is spoken to over HTTP.

        An entry of ``insecure_registries`` matches regardless of case. An
        entry with a port (``registry.local:5000``) matches that port only; an
        entry without one (``registry.local``) matches the host on every port
        and without a port. An IPv6 address is written in brackets
        (``[::1]`` or ``[::1]:5000``). Every other host is spoken to over HTTPS.
        """
        entries = {entry.lower() for entry in self.insecure_registry_hosts()}
        host = host.strip().lower()
        without_port = host if host.endswith("]") else host.rsplit(":", 1)[0]
        return host in entries or without_port in entries

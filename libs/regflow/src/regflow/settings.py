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
    # insecure-registries list. Comma-separated ``host[:port]`` values.
    insecure_registries: str = ""

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    def insecure_registry_hosts(self) -> frozenset[str]:
        """The hosts in ``insecure_registries`` as a set."""
        return frozenset(
            h.strip() for h in self.insecure_registries.split(",") if h.strip()
        )

"""Run the four regflow services as separate processes (demo and end-to-end tests).

Each service is started the way an operator would start it, ``python -m
<package>`` with ``REGFLOW_*`` environment variables, and counts as up once its
``/health/ready`` answers 200.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from cryptography.fernet import Fernet

from deploy.stack import (
    ComponentExitedError,
    ManagedProcess,
    StackError,
    child_env,
    free_port,
    spawn,
)

SERVICES = ("config-svc", "resolver-svc", "pusher-svc", "cache-svc")
READY_TIMEOUT_SECONDS = 90.0


@dataclass
class RunningService:
    """One service process and where it listens."""

    name: str
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        """Base URL of its HTTP API (and health endpoints)."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    """The four services, started together, stopped together (SIGTERM, drain).

    ``with Fleet(workdir, stack_env) as fleet:`` returns once all four are
    ready; any failure or Ctrl-C stops whatever was started and re-raises.
    """

    workdir: Path
    stack_env: dict[str, str]
    log_format: str = "json"
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    services: dict[str, RunningService] = field(default_factory=dict)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def env_for(self, port: int) -> dict[str, str]:
        """The environment one service runs with."""
        return child_env(
            lambda key: key.startswith(("REGFLOW_", "STACK_")),
            {
                "REGFLOW_SECRET_KEYS": self.secret_key,
                "REGFLOW_LOG_FORMAT": self.log_format,
                "REGFLOW_LOG_LEVEL": "INFO",
                # The stack's own values (its secret key, if any) win.
                **{k: v for k, v in self.stack_env.items() if k.startswith("REGFLOW_")},
                "REGFLOW_HTTP_PORT": str(port),
            },
        )

    def start(self) -> None:
        """Spawn all four, then wait for each to be ready. Raises StackError."""
        for name in SERVICES:
            port = free_port()
            module = name.replace("-", "_")
            process = spawn(
                name,
                [sys.executable, "-m", module],
                self.workdir,
                env=self.env_for(port),
            )
            self.services[name] = RunningService(name, port, process)
        for service in self.services.values():
            _wait_until_ready(service)

    def stop(self) -> None:
        """SIGTERM each service (they drain and commit), SIGKILL stragglers."""
        for service in reversed(list(self.services.values())):
            service.process.stop(grace_seconds=30)
        self.services.clear()

    def __getitem__(self, name: str) -> RunningService:
        return self.services[name]


def _wait_until_ready(service: RunningService) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = f"{service.url}/health/ready"
    while True:
        if not service.process.is_running():
            raise ComponentExitedError(
                f"exited (code {service.process.returncode()}) before it was ready",
                component=service.name,
                log_path=service.process.log_path,
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == httpx.codes.OK:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise StackError(
                f"not ready within {READY_TIMEOUT_SECONDS:.0f} s",
                component=service.name,
                log_path=service.process.log_path,
            )
        time.sleep(0.2)

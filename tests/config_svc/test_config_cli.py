"""regflow-config against the real app served over loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from config_svc.cli import app as cli
from deploy.stack import free_port

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory

pytestmark = pytest.mark.integration

PASSWORD = "cli-secret-never-printed"


@pytest.fixture(autouse=True)
def _quiet_service_logs() -> Iterator[None]:
    """Keep the served app's log lines out of the CLI output the runner captures."""
    with structlog.testing.capture_logs():
        yield


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    """The app served by uvicorn on a loopback port, in the test's event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _run(base_url: str, *args: str, stdin: str | None = None) -> Result:
    """Run the CLI in a thread (it blocks on HTTP) while the loop serves the app."""
    argv = [*args, "--url", base_url, "--account", "acme"]

    def invoke() -> Result:
        return CliRunner().invoke(cli, argv, input=stdin)

    return await asyncio.to_thread(invoke)


def _output(result: Result) -> str:
    return result.stdout + result.stderr


async def _add_prod(base_url: str, *, stdin: str) -> Result:
    """`registries add prod` for registry.example.com as user bot, password on stdin."""
    return await _run(
        base_url,
        "registries",
        "add",
        "prod",
        "--provider",
        "other",
        "--domain",
        "registry.example.com",
        "--username",
        "bot",
        "--password-stdin",
        stdin=stdin,
    )


async def test_add_list_show_update_remove(base_url: str) -> None:
    """The CRUD commands round-trip through the API; the password never shows."""
    added = await _add_prod(base_url, stdin=PASSWORD + "\n")
    assert added.exit_code == 0, _output(added)
    assert "credentials:       stored" in added.stdout

    listed = await _run(base_url, "registries", "list")
    assert "prod" in listed.stdout
    assert "registry.example.com" in listed.stdout

    updated = await _run(base_url, "registries", "update", "prod", "--prefix", "team")
    assert updated.exit_code == 0, _output(updated)
    shown = await _run(base_url, "registries", "show", "prod", "--json")
    assert '"repository_prefix": "team"' in shown.stdout

    assert (await _run(base_url, "registries", "set-default", "prod")).exit_code == 0
    caching = await _run(base_url, "registries", "set-caching", "prod")
    assert caching.stdout.strip() == "caching registry: prod"
    assert "default,caching" in (await _run(base_url, "registries", "list")).stdout

    removed = await _run(base_url, "registries", "remove", "prod", "--yes")
    assert removed.exit_code == 0
    assert "no registries" in (await _run(base_url, "registries", "list")).stdout
    for result in (added, listed, updated, shown, caching, removed):
        assert PASSWORD not in _output(result)


async def test_update_of_domain_asks_for_the_password_again(base_url: str) -> None:
    """`update --domain` of a registry with credentials needs the password again."""
    added = await _add_prod(base_url, stdin=PASSWORD)
    assert added.exit_code == 0, _output(added)
    refused = await _run(
        base_url, "registries", "update", "prod", "--domain", "new.example.com"
    )
    assert refused.exit_code == 1
    assert "error: password: the stored password was given for" in refused.stderr
    assert "hint: a new --domain or --provider needs the password again" in (
        refused.stderr
    )
    assert "--password-stdin" in refused.stderr
    assert "--no-credentials" in refused.stderr
    help_text = (await _run(base_url, "registries", "update", "--help")).stdout
    assert "needs the password again" in " ".join(help_text.split())

    moved = await _run(
        base_url,
        "registries",
        "update",
        "prod",
        "--domain",
        "new.example.com",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert moved.exit_code == 0, _output(moved)
    assert "new.example.com" in moved.stdout
    cleared = await _run(
        base_url,
        "registries",
        "update",
        "prod",
        "--domain",
        "other.example.com",
        "--no-credentials",
    )
    assert cleared.exit_code == 0, _output(cleared)
    assert "credentials:       none" in cleared.stdout
    for result in (added, refused, moved, cleared):
        assert PASSWORD not in _output(result)


async def test_password_prompt_is_hidden(base_url: str) -> None:
    """With --username and no --password-stdin, the password is asked for, unechoed."""
    result = await _run(
        base_url,
        "registries",
        "add",
        "quay",
        "--provider",
        "quay",
        "--username",
        "bot",
        stdin=PASSWORD + "\n",
    )
    assert result.exit_code == 0, _output(result)
    assert "Password:" in result.stdout
    assert PASSWORD not in _output(result)


async def test_api_refusals_name_the_field(base_url: str) -> None:
    """A 422 prints the field and reason and exits 1; a 404 prints the reason."""
    result = await _run(
        base_url,
        "registries",
        "add",
        "gcr",
        "--provider",
        "gcr",
        "--domain",
        "us.gcr.io/my-project",
    )
    assert result.exit_code == 1
    assert "error: domain:" in result.stderr
    assert "put 'my-project' in repository_prefix" in result.stderr
    missing = await _run(base_url, "registries", "show", "nope")
    assert missing.exit_code == 1
    assert "no registry named 'nope'" in missing.stderr


async def test_connection_test_reports_ok_and_auth_failure(
    base_url: str, registry_factory: RegistryFactory
) -> None:
    """`test` exits 0 when the registry accepts, 1 with the reason when not."""
    registry = registry_factory("basic")
    assert registry.username is not None
    assert registry.password is not None
    for name, password in (("good", registry.password), ("bad", "wrong-password")):
        added = await _run(
            base_url,
            "registries",
            "add",
            name,
            "--provider",
            "other",
            "--domain",
            registry.host,
            "--username",
            registry.username,
            "--password-stdin",
            stdin=password,
        )
        assert added.exit_code == 0, _output(added)
    good = await _run(base_url, "registries", "test", "good")
    assert good.exit_code == 0, _output(good)
    assert good.stdout.startswith("ok")
    bad = await _run(base_url, "registries", "test", "bad")
    assert bad.exit_code == 1
    assert "failed (auth, HTTP 401)" in bad.stdout
    unsaved = await _run(
        base_url,
        "registries",
        "test",
        "--provider",
        "other",
        "--domain",
        registry.host,
        "--username",
        registry.username,
        "--password-stdin",
        stdin=registry.password,
    )
    assert unsaved.exit_code == 0, _output(unsaved)
    assert registry.password not in _output(unsaved)


async def test_unreachable_service_is_reported() -> None:
    """Without config-svc the CLI says where it tried and exits 1."""
    url = f"http://127.0.0.1:{free_port()}"
    result = await _run(url, "registries", "list")
    assert result.exit_code == 1
    assert f"cannot reach config-svc at {url}" in result.stderr

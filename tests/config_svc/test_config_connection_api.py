"""Test-connection against real registries: ok, refused credentials, unreachable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from config_svc.registries.connection import ConnectionTester
from deploy.stack import free_port
from regflow.settings import CommonSettings
from tests.config_svc.support import LeakGuard
from tests.support.token_server import TokenServer, TokenUser

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory

pytestmark = pytest.mark.integration

BASE = "/v1/accounts/acme/registries"


async def _save(api: httpx.AsyncClient, name: str, **fields: str | None) -> None:
    body = {"name": name, "provider": "other"} | {
        k: v for k, v in fields.items() if v is not None
    }
    response = await api.post(BASE, json=body)
    assert response.status_code == 201, response.text


async def test_saved_registry_with_good_credentials_passes(
    api: httpx.AsyncClient, registry_factory: RegistryFactory, leak_guard: LeakGuard
) -> None:
    """The stored credentials reach the registry's /v2/ and are accepted."""
    registry = registry_factory("basic")
    assert registry.password is not None
    leak_guard.add(registry.password)
    await _save(
        api,
        "local",
        domain=registry.host,
        username=registry.username,
        password=registry.password,
    )
    response = await api.post(f"{BASE}/local/test")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "reason": None,
        "status_code": None,
        "message": None,
    }


async def test_rejected_credentials_are_classified_as_auth(
    api: httpx.AsyncClient, registry_factory: RegistryFactory, leak_guard: LeakGuard
) -> None:
    """Wrong or missing credentials: 200 with ok false, reason auth, HTTP 401."""
    registry = registry_factory("basic")
    wrong = leak_guard.add("definitely-not-the-password")
    await _save(
        api, "wrong", domain=registry.host, username=registry.username, password=wrong
    )
    await _save(api, "anonymous", domain=registry.host)
    for name in ("wrong", "anonymous"):
        response = await api.post(f"{BASE}/{name}/test")
        assert response.status_code == 200
        result = response.json()
        assert result["ok"] is False
        assert result["reason"] == "auth"
        assert result["status_code"] == 401
        assert "access denied" in result["message"]


async def test_token_auth_registry_is_tested_through_the_token_flow(
    api: httpx.AsyncClient,
    registry_factory: RegistryFactory,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    """A Bearer-token registry: good credentials pass, wrong ones fail as auth."""
    password = leak_guard.add("alice-token-pw")
    server = TokenServer(
        users={"alice": TokenUser(password)}, workdir=tmp_path / "token-server"
    )
    with server.running():
        registry = registry_factory(server.registry_auth())
        await _save(
            api, "good", domain=registry.host, username="alice", password=password
        )
        await _save(
            api, "bad", domain=registry.host, username="alice", password="wrong"
        )
        good = (await api.post(f"{BASE}/good/test")).json()
        bad = (await api.post(f"{BASE}/bad/test")).json()
    assert good["ok"] is True
    assert bad["ok"] is False
    assert bad["reason"] == "auth"
    assert bad["status_code"] == 401


async def test_unreachable_registry_is_classified_as_network(
    api: httpx.AsyncClient,
) -> None:
    """Nothing listening on the host: ok false, reason network, no status."""
    await _save(api, "gone", domain=f"127.0.0.1:{free_port()}")
    result = (await api.post(f"{BASE}/gone/test")).json()
    assert result["ok"] is False
    assert result["reason"] == "network"
    assert result["status_code"] is None


async def test_unsaved_settings_can_be_tested(
    api: httpx.AsyncClient, registry_factory: RegistryFactory, leak_guard: LeakGuard
) -> None:
    """POST /test checks settings that were never saved, and saves nothing."""
    registry = registry_factory("basic")
    open_registry = registry_factory("none")
    assert registry.password is not None
    leak_guard.add(registry.password)
    unsaved = {
        "provider": "other",
        "domain": registry.host,
        "username": registry.username,
        "password": registry.password,
    }
    good = await api.post(f"{BASE}/test", json=unsaved)
    assert good.json()["ok"] is True
    bad = await api.post(f"{BASE}/test", json={**unsaved, "password": "nope"})
    assert bad.json()["reason"] == "auth"
    anonymous = await api.post(
        f"{BASE}/test", json={"provider": "other", "domain": open_registry.host}
    )
    assert anonymous.json()["ok"] is True
    assert (await api.get(BASE)).json()["registries"] == []


async def test_unsaved_settings_are_validated(api: httpx.AsyncClient) -> None:
    """Unsaved settings follow the same rules: 422 naming the field."""
    response = await api.post(
        f"{BASE}/test", json={"provider": "other", "domain": "http://127.0.0.1:5000"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "domain"]
    response = await api.post(
        f"{BASE}/test", json={"provider": "other", "domain": "x.io", "username": "u"}
    )
    assert response.json()["detail"][0]["loc"] == ["body", "password"]


async def test_https_is_used_unless_the_host_is_listed_insecure(
    registry_factory: RegistryFactory,
) -> None:
    """A plain-HTTP registry not listed as insecure fails (TLS), as a network error."""
    registry = registry_factory("none")
    secure_only = ConnectionTester(lambda _: False, timeout=5.0)
    result = await secure_only.test(registry.host, None)
    assert result.reason == "network"
    listed = CommonSettings(insecure_registries=registry.host)
    by_port = ConnectionTester(listed.is_insecure_registry, timeout=5.0)
    assert (await by_port.test(registry.host, None)).ok

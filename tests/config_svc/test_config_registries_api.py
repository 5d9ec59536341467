"""The registries HTTP API on the real app and a real Redis."""

from typing import Any

import httpx
import pytest

from regflow.events import REGISTRY_CHANGES, Provider
from regflow.kafka import RecordingProducer
from regflow.registries import (
    RegistryStore,
    SecretBox,
    credentials_from,
    outbox_key,
)
from regflow.service import ServiceContext
from tests.config_svc.support import LeakGuard

pytestmark = pytest.mark.integration

BASE = "/v1/accounts/acme/registries"
PASSWORD = "correct-horse-battery-staple"


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "prod",
        "provider": "other",
        "domain": "registry.example.com:5000",
        "repository_prefix": "team",
        "username": "bot",
        "password": PASSWORD,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _loc(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


@pytest.fixture(autouse=True)
def _guard_password(leak_guard: LeakGuard) -> None:
    leak_guard.add(PASSWORD)


async def test_create_returns_the_registry_without_its_password(
    api: httpx.AsyncClient,
) -> None:
    """POST answers 201 with a Location and the public form of the registry."""
    response = await api.post(BASE, json=_body(domain="Registry.Example.com:5000"))
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{BASE}/prod"
    body = response.json()
    assert body["domain"] == "registry.example.com:5000"
    assert body["username"] == "bot"
    assert body["has_credentials"] is True
    assert body["is_default"] is False
    assert "password" not in body


async def test_read_list_and_one(api: httpx.AsyncClient) -> None:
    """GET lists the account's registries with version and flags, or one by name."""
    await api.post(BASE, json=_body(name="b"))
    await api.post(BASE, json=_body(name="a", username=None, password=None))
    listing = (await api.get(BASE)).json()
    assert listing["version"] == 2
    assert listing["default_registry"] is None
    assert [r["name"] for r in listing["registries"]] == ["a", "b"]
    assert listing["registries"][0]["has_credentials"] is False
    one = await api.get(f"{BASE}/b")
    assert one.status_code == 200
    assert one.json()["repository_prefix"] == "team"
    empty = (await api.get("/v1/accounts/someone-else/registries")).json()
    assert empty["registries"] == []


async def test_unknown_registry_is_404(api: httpx.AsyncClient) -> None:
    """GET, PATCH, DELETE and test of a missing name answer 404 with the reason."""
    for method, path in (
        ("GET", f"{BASE}/nope"),
        ("PATCH", f"{BASE}/nope"),
        ("DELETE", f"{BASE}/nope"),
        ("POST", f"{BASE}/nope/test"),
    ):
        body = {"domain": "quay.io"} if method == "PATCH" else None
        response = await api.request(method, path, json=body)
        assert response.status_code == 404, (method, response.text)
        assert "no registry named 'nope'" in response.json()["detail"]


async def test_duplicate_name_is_409_in_the_field_error_shape(
    api: httpx.AsyncClient,
) -> None:
    """A taken name is a conflict, reported as a list naming body.name."""
    assert (await api.post(BASE, json=_body())).status_code == 201
    response = await api.post(BASE, json=_body(domain="quay.io"))
    assert response.status_code == 409
    [error] = response.json()["detail"]
    assert error["type"] == "registry_exists"
    assert error["loc"] == ["body", "name"]
    assert "already has a registry named 'prod'" in error["msg"]


async def test_names_are_unique_regardless_of_case(api: httpx.AsyncClient) -> None:
    """'EXT' is refused next to 'ext'; names keep their case; lookups are exact."""
    assert (await api.post(BASE, json=_body(name="Ext"))).status_code == 201
    for taken in ("ext", "EXT"):
        response = await api.post(BASE, json=_body(name=taken))
        assert response.status_code == 409, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "name"]
        assert "named 'Ext'" in error["msg"]
        assert "regardless of case" in error["msg"]
    listing = (await api.get(BASE)).json()
    assert [r["name"] for r in listing["registries"]] == ["Ext"]
    assert (await api.get(f"{BASE}/Ext")).status_code == 200
    missed = await api.get(f"{BASE}/ext")
    assert missed.status_code == 404
    assert "did you mean 'Ext'?" in missed.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"name": "-prod"}, ["body", "name"]),
        ({"name": None}, ["body", "name"]),
        ({"provider": "nexus"}, ["body", "provider"]),
        ({"domain": "https://ghcr.io"}, ["body", "domain"]),
        ({"domain": "us.gcr.io/my-project"}, ["body", "domain"]),
        ({"repository_prefix": "Team"}, ["body", "repository_prefix"]),
        ({"username": "a:b"}, ["body", "username"]),
        ({"password": None}, ["body", "password"]),
        ({"username": None}, ["body", "username"]),
        ({"provider": "dockerhub", "domain": "ghcr.io"}, ["body", "domain"]),
        (
            {"provider": "dockerhub", "domain": None, "repository_prefix": "a/b"},
            ["body", "repository_prefix"],
        ),
        ({"provider": "ecr", "domain": None}, ["body", "domain"]),
        (
            {"domain": "Index.Docker.io:443", "repository_prefix": "a/b"},
            ["body", "repository_prefix"],
        ),
        ({"password": ""}, ["body", "password"]),
        ({"is_default": True}, ["body", "is_default"]),
    ],
)
async def test_invalid_create_is_422_naming_the_field(
    api: httpx.AsyncClient, overrides: dict[str, Any], loc: list[str]
) -> None:
    """Field errors and registry rules both answer 422 with the field's loc."""
    response = await api.post(BASE, json=_body(**overrides))
    assert loc in _loc(response)
    assert (await api.get(BASE)).json()["registries"] == []


async def test_rule_errors_have_fastapi_error_shape(api: httpx.AsyncClient) -> None:
    """A registry rule comes back as a list of {type, loc, msg} like pydantic's."""
    response = await api.post(BASE, json=_body(provider="dockerhub", domain="quay.io"))
    [error] = response.json()["detail"]
    assert error["type"] == "registry_rule"
    assert error["loc"] == ["body", "domain"]
    assert "docker.io" in error["msg"]


async def test_invalid_path_parts_are_422(api: httpx.AsyncClient) -> None:
    """A malformed account id or registry name in the path is named in loc."""
    assert ["path", "account_id"] in _loc(
        await api.get("/v1/accounts/a%20b/registries")
    )
    assert ["path", "name"] in _loc(await api.get(f"{BASE}/-bad"))


async def test_rejected_passwords_are_not_echoed(
    api: httpx.AsyncClient, leak_guard: LeakGuard
) -> None:
    """Validation errors about a password never repeat its value."""
    long_secret = leak_guard.add("z" * 16385)
    assert ["body", "password"] in _loc(
        await api.post(BASE, json=_body(password=long_secret))
    )
    nested = leak_guard.add("nested-secret-value")
    response = await api.post(
        BASE, json=_body(credentials={"username": "x", "password": nested})
    )
    assert ["body", "credentials"] in _loc(response)
    numeric = leak_guard.add("918273645")
    response = await api.post(BASE, json=_body(password=int(numeric)))
    assert ["body", "password"] in _loc(response)
    response = await api.post(
        f"{BASE}/test", json={"provider": "x", "password": nested}
    )
    assert ["body", "provider"] in _loc(response)
    assert leak_guard.checked == 4


async def test_messages_say_what_is_wrong_in_plain_words(
    api: httpx.AsyncClient,
) -> None:
    """No "a other"/"a ecr" article, and an empty password says just that."""
    for provider in ("other", "ecr"):
        response = await api.post(BASE, json=_body(provider=provider, domain=None))
        [error] = response.json()["detail"]
        assert error["msg"] == (
            f"provider '{provider}' has no default domain: give the registry's "
            "host[:port]"
        )
    empty = await api.post(BASE, json=_body(password=""))
    [error] = empty.json()["detail"]
    assert error["loc"] == ["body", "password"]
    assert error["msg"].endswith("password must not be empty")
    assert "item" not in error["msg"]


async def test_patch_changes_only_given_fields(api: httpx.AsyncClient) -> None:
    """PATCH keeps omitted fields (the password too); null clears optional ones."""
    await api.post(BASE, json=_body())
    response = await api.patch(
        f"{BASE}/prod", json={"domain": "quay.io", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["domain"], body["repository_prefix"], body["username"]) == (
        "quay.io",
        "team",
        "bot",
    )
    assert body["has_credentials"] is True
    cleared = await api.patch(
        f"{BASE}/prod",
        json={"repository_prefix": None, "username": None, "password": None},
    )
    assert cleared.json()["repository_prefix"] is None
    assert cleared.json()["has_credentials"] is False
    unchanged = await api.patch(f"{BASE}/prod", json={"domain": "QUAY.IO"})
    assert unchanged.status_code == 200
    assert unchanged.json()["domain"] == "quay.io"


async def test_invalid_patch_is_422_naming_the_field(api: httpx.AsyncClient) -> None:
    """Renames, half credentials and broken values are refused on their field."""
    await api.post(BASE, json=_body(username=None, password=None))
    assert ["body", "name"] in _loc(await api.patch(f"{BASE}/prod", json={"name": "x"}))
    assert ["body", "password"] in _loc(
        await api.patch(f"{BASE}/prod", json={"username": "bot"})
    )
    assert ["body", "domain"] in _loc(
        await api.patch(f"{BASE}/prod", json={"domain": "ghcr.io/acme"})
    )
    assert ["body", "provider"] in _loc(
        await api.patch(f"{BASE}/prod", json={"provider": None})
    )


async def test_domain_change_needs_the_password_again(
    api: httpx.AsyncClient,
) -> None:
    """The stored password never follows a new domain or provider to test/push."""
    await api.post(BASE, json=_body())
    for change in ({"domain": "evil.example.com"}, {"provider": "quay"}):
        for extra in ({}, {"username": "bot"}):
            response = await api.patch(f"{BASE}/prod", json=change | extra)
            assert _loc(response) == [["body", "password"]], change | extra
            message = response.json()["detail"][0]["msg"]
            assert "password again" in message
            assert "registry.example.com:5000" in message
    stored = (await api.get(f"{BASE}/prod")).json()
    assert (stored["domain"], stored["provider"]) == (
        "registry.example.com:5000",
        "other",
    )

    same_host = await api.patch(
        f"{BASE}/prod", json={"domain": "REGISTRY.example.com:5000"}
    )
    assert same_host.status_code == 200, same_host.text
    moved = await api.patch(
        f"{BASE}/prod", json={"domain": "new.example.com", "password": PASSWORD}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["domain"], moved.json()["username"]) == (
        "new.example.com",
        "bot",
    )
    cleared = await api.patch(
        f"{BASE}/prod",
        json={"domain": "other.example.com", "username": None, "password": None},
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["has_credentials"] is False
    anonymous = await api.patch(f"{BASE}/prod", json={"domain": "quay.io"})
    assert anonymous.status_code == 200, anonymous.text


async def test_docker_hub_by_domain_cannot_cache(api: httpx.AsyncClient) -> None:
    """Provider other on a Docker Hub host is Docker Hub for the caching rule."""
    hub = _body(
        name="hub", domain="Registry-1.Docker.io:443", username=None, password=None
    )
    assert (await api.post(BASE, json=hub)).status_code == 201
    refused = await api.put(f"{BASE}/caching", json={"name": "hub"})
    assert _loc(refused) == [["body", "name"]]
    assert "Docker Hub" in refused.json()["detail"][0]["msg"]

    await api.post(BASE, json=_body(name="cache", username=None, password=None))
    assert (await api.put(f"{BASE}/caching", json={"name": "cache"})).status_code == 200
    moved = await api.patch(f"{BASE}/cache", json={"domain": "index.docker.io"})
    assert _loc(moved) == [["body", "domain"]]
    assert "caching registry" in moved.json()["detail"][0]["msg"]
    assert (await api.get(f"{BASE}/cache")).json()["domain"] == (
        "registry.example.com:5000"
    )


async def test_delete_is_204_and_final(api: httpx.AsyncClient) -> None:
    """DELETE answers 204; the registry is gone afterwards."""
    await api.post(BASE, json=_body())
    response = await api.delete(f"{BASE}/prod")
    assert response.status_code == 204
    assert response.content == b""
    assert (await api.get(f"{BASE}/prod")).status_code == 404


async def test_credentials_no_key_decrypts_do_not_block_the_account(
    api: httpx.AsyncClient, context: ServiceContext
) -> None:
    """Sealed with a key the service lacks: list, read, replace and delete work.

    Only a connection test, which needs the password, fails (500, saying why).
    """
    foreign = RegistryStore(
        context.redis, context.keys, SecretBox.from_setting(SecretBox.generate_key())
    )
    for name in ("old", "doomed"):
        await foreign.create(
            "acme",
            name=name,
            provider=Provider.OTHER,
            domain="registry.example.com",
            credentials=credentials_from("bot", PASSWORD),
        )
    listing = await api.get(BASE)
    assert listing.status_code == 200, listing.text
    assert [
        (r["username"], r["has_credentials"]) for r in listing.json()["registries"]
    ] == [
        ("bot", True),
        ("bot", True),
    ]
    one = await api.get(f"{BASE}/old")
    assert (one.status_code, one.json()["username"]) == (200, "bot")
    tested = await api.post(f"{BASE}/old/test")
    assert tested.status_code == 500
    assert "REGFLOW_SECRET_KEYS" in tested.json()["detail"]
    assert _loc(await api.patch(f"{BASE}/old", json={"username": "robot"})) == [
        ["body", "password"]
    ]

    replaced = await api.patch(f"{BASE}/old", json={"password": "a-new-token"})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["username"], replaced.json()["has_credentials"]) == (
        "bot",
        True,
    )
    assert (await api.delete(f"{BASE}/doomed")).status_code == 204
    assert [r["name"] for r in (await api.get(BASE)).json()["registries"]] == ["old"]


async def test_default_and_caching_selection(api: httpx.AsyncClient) -> None:
    """PUT /default and /caching switch the account's choice; null clears it."""
    await api.post(BASE, json=_body(name="a"))
    await api.post(BASE, json=_body(name="b"))
    await api.post(BASE, json=_body(name="hub", provider="dockerhub", domain=None))

    assert (await api.put(f"{BASE}/default", json={"name": "a"})).status_code == 200
    switched = await api.put(f"{BASE}/default", json={"name": "b"})
    assert switched.json()["default_registry"] == "b"
    flags = {
        r["name"]: r["is_default"] for r in (await api.get(BASE)).json()["registries"]
    }
    assert flags == {"a": False, "b": True, "hub": False}

    caching = await api.put(f"{BASE}/caching", json={"name": "a"})
    assert caching.json() == {
        "version": caching.json()["version"],
        "default_registry": "b",
        "caching_registry": "a",
    }
    hub = await api.put(f"{BASE}/caching", json={"name": "hub"})
    assert _loc(hub) == [["body", "name"]]
    assert "Docker Hub" in hub.json()["detail"][0]["msg"]
    missing = await api.put(f"{BASE}/default", json={"name": "nope"})
    assert _loc(missing) == [["body", "name"]]

    cleared = await api.put(f"{BASE}/default", json={"name": None})
    assert cleared.json()["default_registry"] is None
    assert (await api.get(f"{BASE}/b")).json()["is_default"] is False


async def test_deleting_the_default_leaves_none(api: httpx.AsyncClient) -> None:
    """The default registry may be deleted; the account then has no default."""
    await api.post(BASE, json=_body())
    await api.put(f"{BASE}/default", json={"name": "prod"})
    assert (await api.delete(f"{BASE}/prod")).status_code == 204
    assert (await api.get(BASE)).json()["default_registry"] is None


async def test_every_change_emits_an_event_with_the_next_version(
    api: httpx.AsyncClient,
    producer: RecordingProducer,
    context: ServiceContext,
) -> None:
    """Writes publish registry-change events in order, versions 1..N, no secret."""
    await api.post(BASE, json=_body(), headers={"X-Correlation-ID": "req-1"})
    await api.patch(f"{BASE}/prod", json={"repository_prefix": "other"})
    await api.put(f"{BASE}/default", json={"name": "prod"})
    await api.put(f"{BASE}/default", json={"name": "prod"})  # no change, no event
    await api.post(BASE, json=_body(domain="quay.io"))  # conflict, no event
    await api.delete(f"{BASE}/prod")

    events = producer.events(REGISTRY_CHANGES)
    assert [(e.data.change, e.data.version) for e in events] == [
        ("created", 1),
        ("updated", 2),
        ("updated", 3),
        ("deleted", 4),
    ]
    assert events[0].correlation_id == "req-1"
    assert events[0].account_id == "acme"
    assert events[1].data.registry.repository_prefix == "other"
    assert events[2].data.default_registry == "prod"
    assert events[3].data.default_registry is None
    for event in events:
        assert PASSWORD not in event.model_dump_json()
    assert await context.redis.llen(outbox_key(context.keys)) == 0


async def test_openapi_documents_the_api(api: httpx.AsyncClient) -> None:
    """The OpenAPI document lists every route and the request schemas."""
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths[BASE.replace("acme", "{account_id}")]) == {"get", "post"}
    one = paths[f"{BASE.replace('acme', '{account_id}')}/{{name}}"]
    assert set(one) == {"get", "patch", "delete"}
    schemas = document["components"]["schemas"]
    assert {"RegistryCreate", "RegistryUpdate", "RegistryPublic"} <= set(schemas)
    assert "password" not in schemas["RegistryPublic"]["properties"]

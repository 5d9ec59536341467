"""``/v1/accounts/{account_id}/registries``: the registry-integration API.

Every write commits the change and its registry-change event together
(transactional outbox); the event is published right after the response is
sent, or by the periodic relay if the broker is down then.

There is no authentication yet: the account comes from the path (see the TODO
at the router).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    Header,
    Path,
    Request,
    Response,
    status,
)

from config_svc.registries.schemas import (
    ConnectionTestResult,
    RegistryConnection,
    RegistryCreate,
    RegistryListPublic,
    RegistryPublic,
    RegistrySelection,
    RegistrySelectionPublic,
    RegistryUpdate,
)
from config_svc.runtime import ConfigRuntime
from regflow.registries import (
    RegistryChangeResult,
    RegistryNotFound,
    RegistryRuleViolation,
    RegistryStore,
    credentials_from,
)
from regflow.registries.rules import ACCOUNT_ID_PATTERN, NAME_PATTERN, resolve_domain
from regflow.service import ServiceContext, get_context

log = structlog.get_logger(__name__)


def get_runtime(request: Request) -> ConfigRuntime:
    """FastAPI dependency: the process's :class:`ConfigRuntime`."""
    runtime: ConfigRuntime = request.app.state.config_runtime
    return runtime


ContextDep = Annotated[ServiceContext, Depends(get_context)]
RuntimeDep = Annotated[ConfigRuntime, Depends(get_runtime)]


def get_store(context: ContextDep, runtime: RuntimeDep) -> RegistryStore:
    """FastAPI dependency: the registry store."""
    return runtime.store(context)


StoreDep = Annotated[RegistryStore, Depends(get_store)]
AccountId = Annotated[
    str,
    Path(
        pattern=ACCOUNT_ID_PATTERN,
        description="The platform account the registries belong to",
    ),
]
RegistryName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        description="The registry integration's name, exactly as written (case too)",
    ),
]
CorrelationId = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID",
        max_length=128,
        description="Carried into the registry-change event, for tracing",
    ),
]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No registry of that name"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {
        "description": "The name is taken in the account (in any case); `detail` "
        "is a list of {type: registry_exists, loc: [body, name], msg}"
    }
}

# TODO(regflow#2): authenticate callers (an operator token, or the platform's
# account auth) before these routes leave a trusted network: anyone who can reach
# them can change any account's registries, and test-connection makes the
# service call any host a caller names (SSRF).
router = APIRouter(prefix="/v1/accounts/{account_id}/registries", tags=["registries"])


class ChangePublisher:
    """Logs a committed change and publishes its event after the response."""

    def __init__(
        self,
        runtime: ConfigRuntime,
        context: ServiceContext,
        background: BackgroundTasks,
    ) -> None:
        self._runtime = runtime
        self._context = context
        self._background = background

    def after_response(self, result: RegistryChangeResult) -> None:
        """Schedule publishing of the outbox if ``result`` changed anything."""
        if result.event is None:
            return
        log.info(
            "registry changed",
            account_id=result.event.account_id,
            registry=result.event.data.registry.name,
            change=result.event.data.change,
            version=result.version,
        )
        self._background.add_task(self._runtime.publish_pending, self._context)


def get_publisher(
    runtime: RuntimeDep, context: ContextDep, background: BackgroundTasks
) -> ChangePublisher:
    """FastAPI dependency: the change publisher of this request."""
    return ChangePublisher(runtime, context, background)


PublisherDep = Annotated[ChangePublisher, Depends(get_publisher)]


@router.get("")
async def read_registries(
    *, account_id: AccountId, store: StoreDep
) -> RegistryListPublic:
    """List the account's registries with its default and caching registry."""
    return RegistryListPublic.of(await store.snapshot(account_id))


@router.post("", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_registry(
    *,
    account_id: AccountId,
    body: RegistryCreate,
    store: StoreDep,
    publisher: PublisherDep,
    response: Response,
    correlation_id: CorrelationId = None,
) -> RegistryPublic:
    """Connect a registry to the account."""
    result = await store.create(
        account_id,
        name=body.name,
        provider=body.provider,
        domain=body.domain,
        repository_prefix=body.repository_prefix,
        credentials=credentials_from(body.username, body.password),
        correlation_id=correlation_id,
    )
    assert result.registry is not None
    publisher.after_response(result)
    response.headers["Location"] = (
        f"{router.prefix.format(account_id=account_id)}/{result.registry.name}"
    )
    return RegistryPublic.of(result.registry)


@router.post("/test")
async def check_unsaved_connection(
    *, account_id: AccountId, body: RegistryConnection, runtime: RuntimeDep
) -> ConnectionTestResult:
    """Test settings before saving them: ``GET /v2/`` with these credentials."""
    domain = resolve_domain(body.provider, body.domain)
    assert domain is not None
    credentials = credentials_from(body.username, body.password)
    log.debug("testing unsaved registry", account_id=account_id, domain=domain)
    return await runtime.tester.test(domain, credentials)


@router.put("/default")
async def set_default_registry(
    *,
    account_id: AccountId,
    body: RegistrySelection,
    store: StoreDep,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> RegistrySelectionPublic:
    """Choose where pushes go that name no registry (``null``: nowhere)."""
    return await _select(store.set_default, account_id, body, publisher, correlation_id)


@router.put("/caching")
async def set_caching_registry(
    *,
    account_id: AccountId,
    body: RegistrySelection,
    store: StoreDep,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> RegistrySelectionPublic:
    """Choose the registry build caches use (``null``: none; not Docker Hub)."""
    return await _select(store.set_caching, account_id, body, publisher, correlation_id)


async def _select(
    setter: Callable[..., Awaitable[RegistryChangeResult]],
    account_id: str,
    body: RegistrySelection,
    publisher: ChangePublisher,
    correlation_id: str | None,
) -> RegistrySelectionPublic:
    """Set an account-wide choice; an unknown name is the body's fault (422)."""
    try:
        result = await setter(account_id, body.name, correlation_id=correlation_id)
    except RegistryNotFound as exc:
        raise RegistryRuleViolation("name", str(exc)) from exc
    publisher.after_response(result)
    return _selection(result)


@router.get("/{name}", responses=_NOT_FOUND)
async def read_registry(
    *, account_id: AccountId, name: RegistryName, store: StoreDep
) -> RegistryPublic:
    """One registry of the account."""
    return RegistryPublic.of(await store.describe(account_id, name))


@router.patch("/{name}", responses=_NOT_FOUND)
async def update_registry(
    *,
    account_id: AccountId,
    name: RegistryName,
    body: RegistryUpdate,
    store: StoreDep,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> RegistryPublic:
    """Change some fields of a registry; the others keep their value.

    Changing the domain or provider of a registry with stored credentials needs
    `password` again (or `username` and `password` null to remove them): the
    stored password is never sent to a host it was not given for.
    """
    result = await store.update(account_id, name, body, correlation_id=correlation_id)
    publisher.after_response(result)
    registry = result.registry or await store.describe(account_id, name)
    return RegistryPublic.of(registry)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_registry(
    *,
    account_id: AccountId,
    name: RegistryName,
    store: StoreDep,
    publisher: PublisherDep,
    correlation_id: CorrelationId = None,
) -> None:
    """Disconnect a registry; if it was the default or caching one, none is left."""
    result = await store.delete(account_id, name, correlation_id=correlation_id)
    publisher.after_response(result)


@router.post("/{name}/test", responses=_NOT_FOUND)
async def check_connection(
    *, account_id: AccountId, name: RegistryName, store: StoreDep, runtime: RuntimeDep
) -> ConnectionTestResult:
    """Test a saved registry: ``GET /v2/`` with its stored credentials."""
    registry = await store.get(account_id, name)
    return await runtime.tester.test(registry.domain, registry.credentials)


def _selection(result: RegistryChangeResult) -> RegistrySelectionPublic:
    return RegistrySelectionPublic(
        version=result.version,
        default_registry=result.default_registry,
        caching_registry=result.caching_registry,
    )

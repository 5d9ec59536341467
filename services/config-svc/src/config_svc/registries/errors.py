"""How store errors and invalid requests look over HTTP.

Rule violations and name conflicts use the shape of FastAPI's own validation
errors (``detail`` is a list of ``{type, loc, msg}``), so a client handles
"field X is wrong" one way whether pydantic, a registry rule or a taken name
found it. Not found uses FastAPI's ``{"detail": "..."}``. Echoed input is
scrubbed of passwords.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from regflow.registries import (
    CredentialsUnreadable,
    RegistryAlreadyExists,
    RegistryNotFound,
    RegistryRuleViolation,
    RegistryStoreUnavailable,
)

log = structlog.get_logger(__name__)

REDACTED: Final = "**********"
# Fields whose values must never be echoed back.
SECRET_FIELDS: Final = frozenset({"password"})
# Rule violations on these fields point into the path, the rest into the body.
PATH_FIELDS: Final = frozenset({"account_id"})
# Seconds a client should wait after a 503.
RETRY_AFTER_SECONDS: Final = 1


def rule_violation_detail(exc: RegistryRuleViolation) -> list[dict[str, Any]]:
    """The FastAPI-style error list for a rule violation."""
    where = "path" if exc.field in PATH_FIELDS else "body"
    return [{"type": "registry_rule", "loc": [where, exc.field], "msg": exc.message}]


def conflict_detail(exc: RegistryAlreadyExists) -> list[dict[str, Any]]:
    """The FastAPI-style error list for a taken registry name."""
    return [{"type": "registry_exists", "loc": ["body", "name"], "msg": str(exc)}]


def _scrub(value: Any) -> Any:
    """``value`` with every secret field's value replaced."""
    if isinstance(value, Mapping):
        return {
            k: REDACTED if k in SECRET_FIELDS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _scrubbed_error(error: Mapping[str, Any]) -> dict[str, Any]:
    scrubbed = dict(error)
    if "input" in scrubbed:
        loc = {str(part) for part in scrubbed.get("loc", ())}
        scrubbed["input"] = (
            REDACTED if loc & SECRET_FIELDS else _scrub(scrubbed["input"])
        )
    ctx = scrubbed.get("ctx")
    if isinstance(ctx, Mapping) and "error" in ctx:
        # The exception object is not JSON; its text is already in ``msg``.
        scrubbed["ctx"] = {k: v for k, v in ctx.items() if k != "error"}
    return scrubbed


async def _validation_failed(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_scrubbed_error(e) for e in exc.errors()]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": jsonable_encoder(errors)},
    )


async def _rule_violated(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryRuleViolation)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": rule_violation_detail(exc)},
    )


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_404_NOT_FOUND, content={"detail": str(exc)}
    )


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryAlreadyExists)
    return JSONResponse(
        status_code=status.HTTP_409_CONFLICT, content={"detail": conflict_detail(exc)}
    )


async def _unreadable(_: Request, exc: Exception) -> JSONResponse:
    # An operator problem (keys), reported once here with its cause.
    log.error("stored credentials unreadable", error=str(exc))
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR, content={"detail": str(exc)}
    )


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("registry store unavailable", error=str(exc))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "the registry store is unavailable; retry shortly"},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(RegistryRuleViolation, _rule_violated)
    app.add_exception_handler(RegistryNotFound, _not_found)
    app.add_exception_handler(RegistryAlreadyExists, _conflict)
    app.add_exception_handler(CredentialsUnreadable, _unreadable)
    app.add_exception_handler(RegistryStoreUnavailable, _unavailable)

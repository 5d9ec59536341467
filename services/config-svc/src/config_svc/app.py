"""The config-svc process: the registries API, health and the outbox relay."""

from __future__ import annotations

from fastapi import FastAPI

from config_svc.registries.errors import install_error_handlers
from config_svc.registries.routes import router
from config_svc.runtime import ConfigRuntime
from config_svc.settings import ConfigSettings
from regflow.service import build_service_app

SERVICE_NAME = "config-svc"


def create_app(settings: ConfigSettings) -> FastAPI:
    """The config-svc app; the relay starts and stops with its lifespan.

    Raises:
        SecretKeyError: ``REGFLOW_SECRET_KEYS`` holds no usable key.
    """
    runtime = ConfigRuntime.from_settings(settings)
    app = build_service_app(
        SERVICE_NAME,
        settings,
        routers=[router],
        on_startup=runtime.start,
        on_shutdown=runtime.stop,
    )
    app.title = "regflow config-svc"
    app.description = (
        "Registry integrations per account: connect, change, test and remove the "
        "registries builds are pushed to, and choose the default and caching one."
    )
    app.state.config_runtime = runtime
    install_error_handlers(app)
    return app

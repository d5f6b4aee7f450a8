"""The HTTP application: the hub's intake and lookup API, health, and the registry's API."""
from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY

from hub.api import health, messages
from hub.api.auth import ApiAuthentication, auth_error_handler
from hub.api.health import OutboxCollector
from hub.api.problems import DatabaseUnavailableMiddleware, input_error_handler, not_found_handler, try_later_handler
from hub.access.tokens import AuthError
from hub.errors import InputError, NotFound, TryLater


def create_app(hub, registry) -> FastAPI:
    from connectors.soap.inbound import soap_router
    from registry.views import router as registry_router

    app = FastAPI(title="Consular exchange hub", version="0.1.0",
                  description="Routes signed, schema-validated XML messages between the consular registry and "
                              "partner administrations. Errors are application/problem+json. Every /api route "
                              "needs an API token: `Authorization: Bearer hub_<id>_<secret>` (`hub tokens create`).")
    app.state.hub = hub
    app.state.registry = registry
    app.add_exception_handler(InputError, input_error_handler)
    app.add_exception_handler(NotFound, not_found_handler)
    app.add_exception_handler(TryLater, try_later_handler)  # 429 back-pressure: Retry-After
    app.add_exception_handler(AuthError, auth_error_handler)
    app.add_middleware(ApiAuthentication, hub=hub)  # 401 under /api before routing, parsing or validation
    # added last, so outermost: the token check's own database errors are 503 too, not 500
    app.add_middleware(DatabaseUnavailableMiddleware)
    app.include_router(messages.router)
    app.include_router(soap_router())
    app.include_router(registry_router)
    app.include_router(health.router)
    try:
        REGISTRY.register(OutboxCollector(hub))
    except ValueError:  # already registered in this process (tests build several apps)
        pass
    return app

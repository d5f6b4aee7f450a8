"""The HTTP application: the hub's intake and lookup API, health, the connectors' inbound endpoints
(InboundRoutes, e.g. SOAP's /soap/{CODE}) and the routers of the apps it runs (hub/apps.py)."""
from __future__ import annotations

from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from prometheus_client import REGISTRY
from starlette.exceptions import HTTPException

from connectors.base import InboundRoutes

from hub.api import health, mapping_checks, mappings, messages, partner_traffic
from hub.api.auth import ApiAuthentication, auth_error_handler
from hub.api.edge import RequestBounds, http_error_handler, validation_error_handler
from hub.api.health import OutboxCollector
from hub.api.intake_front import IntakeFront
from hub.api.openapi import openapi
from hub.api.problems import DatabaseUnavailableMiddleware, input_error_handler, not_found_handler, try_later_handler
from hub.apps import console_parts
from hub.errors import AuthError, InputError, NotFound, TryLater
from hub.monitor import STATIC, routers as console_routers
from hub.monitor.web import console_error, under_console


def create_app(hub, apps: Sequence = ()) -> FastAPI:
    """The API of `hub` with `apps` (hub.apps.App) mounted; each app is `app.state.<its name>` for its views."""
    app = FastAPI(title="Consular exchange hub", version="0.1.0",
                  description="Routes signed, schema-validated XML messages between the consular registry and "
                              "partner administrations. Errors are application/problem+json. Every /api route "
                              "needs an API token: `Authorization: Bearer hub_<id>_<secret>` (`hub tokens create`).")
    app.state.hub = hub
    app.openapi = lambda: openapi(app)  # with the answers of the middleware and handlers (hub/api/openapi.py)
    for client in apps:
        setattr(app.state, client.name, client)
    app.state.console_parts = console_parts(apps)
    # errors as problem+json, but as pages under /monitor, where a person is reading
    app.add_exception_handler(InputError, for_people(input_error_handler))
    app.add_exception_handler(NotFound, for_people(not_found_handler))
    app.add_exception_handler(TryLater, try_later_handler)  # 429 back-pressure: Retry-After
    app.add_exception_handler(AuthError, for_people(auth_error_handler))
    app.add_exception_handler(RequestValidationError, for_people(validation_error_handler))  # 422, no value echoed
    app.add_exception_handler(HTTPException, for_people(http_error_handler))  # 404 no route, 405, ... as problems
    inbound = inbound_routers(hub)
    # parameters' characters and body sizes, after the token check (an anonymous caller gets 401 first)
    app.add_middleware(RequestBounds, hub=hub, paths=lambda: app.openapi()["paths"],
                       exempt=tuple(router.prefix + "/" for router in inbound))
    app.add_middleware(IntakeFront)  # the intake routes without FastAPI's routing (hub/api/intake_front.py)
    public = tuple(prefix for client in apps for prefix in getattr(client, "public_paths", tuple)())
    app.add_middleware(ApiAuthentication, hub=hub, public=public)  # 401 under /api before routing or parsing
    # added last, so outermost: the token check's own database errors are 503 too, not 500
    app.add_middleware(DatabaseUnavailableMiddleware)
    app.include_router(messages.router)
    app.include_router(partner_traffic.router)  # a partner's own traffic
    app.include_router(mappings.router)  # mapping versions, activation, rollback
    app.include_router(mapping_checks.router)  # try a mapping version before it goes live
    for router in inbound:
        app.include_router(router)
    for client in apps:
        for router in client.routers():
            app.include_router(router)
    for router in console_routers():
        app.include_router(router)
    app.mount("/monitor/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(health.router)
    try:
        REGISTRY.register(OutboxCollector(hub))
    except ValueError:  # already registered in this process (tests build several apps)
        pass
    return app


def for_people(handler):
    """`handler` for the API; under /monitor (the console) the same error as a page."""
    async def handle(request: Request, exc):
        if not under_console(request.url.path):
            return await handler(request, exc)
        status = getattr(exc, "status", None) or getattr(exc, "status_code", 500)
        if isinstance(exc, RequestValidationError):
            status, detail = 422, "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                                            for e in exc.errors())[:500]
        else:
            detail = getattr(exc, "detail", None) or str(exc)
        return await console_error(request, status, getattr(exc, "title", ""), str(detail))
    return handle


def inbound_routers(hub) -> list:
    """The inbound endpoints the connectors serve, each router once (the parties of one transport share one)."""
    routers: list = []
    for connector in hub.connectors.values():
        if isinstance(connector, InboundRoutes):
            router = connector.inbound_router()
            if all(router is not seen for seen in routers):
                routers.append(router)
    return routers

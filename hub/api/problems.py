"""Errors as RFC 9457 problem details (application/problem+json).

A refusal (InputError) is answered here and nothing more: the door it came through already recorded
and counted it (hub/intake/door.py).

The database out of reach (PostgreSQL down or restarting, connections cut, the pool exhausted, an
SQLite file locked past its busy timeout) is the hub's temporary trouble, not a defect: any request
that meets it, including the token check that runs before routing, is answered 503 "Database
unavailable" with Retry-After (`DatabaseUnavailableMiddleware`), never 500. Intake is idempotent by
message id, so the caller sends the same message again; the hub reconnects by itself (a pooled connection idle
for over a second is pinged before use and replaced if dead, hub/store/db.py).
"""
from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub.errors import InputError, NotFound, TryLater, first_line

log = logging.getLogger("hub.api")


def problem(status: int, title: str, detail: str, errors: list[dict] | None = None,
            extensions: dict | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **(extensions or {})}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def input_problem(exc: InputError) -> JSONResponse:
    """A refusal as a problem: its status, title, detail and problems."""
    return problem(exc.status, exc.title, exc.detail, [p.as_dict() for p in exc.problems])


async def input_error_handler(_request: Request, exc: InputError) -> JSONResponse:
    return input_problem(exc)


async def not_found_handler(_request: Request, exc: NotFound) -> JSONResponse:
    return problem(404, "Not found", str(exc))


async def try_later_handler(_request: Request, exc: TryLater) -> JSONResponse:
    """The hub cannot take the input now (429 OutboxFull, ...): its status, Retry-After, and the error's
    machine-readable details (partner, depth, limit, retry_after) as extra members of the problem body."""
    response = problem(exc.status, exc.title, exc.detail, extensions=exc.extensions)
    response.headers.update(exc.headers)
    return response


# What "the database cannot serve this request now" looks like through SQLAlchemy: the server down or
# restarting, a connection cut (OperationalError, InterfaceError), a connection found dead
# (DisconnectionError), no pooled connection free in time (pool TimeoutError).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: BaseException) -> JSONResponse:
    """503 with Retry-After: the request may not have been stored; the same request is safe to send again."""
    response = problem(503, "Database unavailable",
                       f"the hub's database cannot be reached right now ({type(exc).__name__}); the request may "
                       f"not have been stored: send it again in {DATABASE_RETRY_AFTER_SECONDS} s (the same message "
                       f"is accepted once, by its id)")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Pure ASGI middleware, outermost of the hub's own: turns DATABASE_UNAVAILABLE raised anywhere
    inside (authentication middleware, routes, exception handlers) into `database_unavailable`.
    A response already started cannot be replaced: the error then goes on to the server as before."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except DATABASE_UNAVAILABLE as exc:
            if started:
                raise
            log.warning("%s %s answered 503: database unavailable (%s: %s)", scope.get("method"), scope.get("path"),
                        type(exc).__name__, first_line(exc))
            await database_unavailable(exc)(scope, receive, send)

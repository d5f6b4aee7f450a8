"""`IntakeFront`: POST /api/v1/messages served straight from the ASGI stack, in front of FastAPI's routing.

It is the request every partner and consular application makes, hundreds a second under load, and the
route's own work (hub/api/messages.py `submit`) needs none of what FastAPI adds around it: route
matching, dependency resolution, the exception middleware. Under load those cost about a fifth of an API
process's time. The front sits inside the token check (hub/api/auth.py: the caller's Identity is on the
scope) and answers exactly as the route does: the same permission check, the same body limits, the same
refusals recorded at the door, the same problem+json answers (hub/api/problems.py), a database out of
reach still 503 (the outer DatabaseUnavailableMiddleware). Anything else on that path (a query string,
a body that is not XML) goes on to FastAPI, whose route answers it as before; the route stays registered,
so the OpenAPI document is unchanged.
"""
from __future__ import annotations

import logging

from fastapi import Request
from starlette.requests import ClientDisconnect

from hub.api.auth import auth_problem
from hub.api.edge import XML_MEDIA_TYPES, media_type_of
from hub.api.messages import SUBMIT_PATH, SUBMIT_PERMISSION, submit
from hub.api.problems import input_problem, try_later_handler
from hub.errors import AuthError, InputError, TryLater

log = logging.getLogger("hub.api")
DOING = f"POST {SUBMIT_PATH}"


class IntakeFront:
    """Pure ASGI middleware: POST /api/v1/messages (XML, no query string) answered by `submit` directly."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["path"] == SUBMIT_PATH and scope["method"] == "POST"
                and not scope.get("query_string") and media_type_of(scope) in XML_MEDIA_TYPES):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            identity = scope["state"]["identity"]
            identity.require(SUBMIT_PERMISSION, doing=DOING)
            response = await submit(request, identity)
        except InputError as exc:
            response = input_problem(exc)
        except TryLater as exc:
            response = await try_later_handler(request, exc)
        except AuthError as exc:
            response = auth_problem(exc)
        except ClientDisconnect:  # as RequestBounds: nobody is left to answer
            log.info("%s: the client disconnected before its request was read", DOING)
            return
        await response(scope, receive, send)

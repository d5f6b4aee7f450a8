"""`IntakeFront`: the two intake routes served straight from the ASGI stack, in front of FastAPI's routing.

POST /api/v1/messages (what partners and consular applications send) and POST /api/v1/partners/{partner}/messages
(partners' own-format answers and callbacks) are requests the hub takes hundreds a second under load, and the
routes' own work (hub/api/messages.py `submit`, `submit_as_partner`) needs none of what FastAPI adds around it:
route matching, dependency resolution, the exception middleware. Under load those cost about a fifth of an API
process's time. The front sits inside the token check (hub/api/auth.py: the caller's Identity is on the scope)
and answers exactly as the routes do: the same permission checks, the same body limits, the same refusals
recorded at the door, the same problem+json answers (hub/api/problems.py), a database out of reach still 503
(the outer DatabaseUnavailableMiddleware). Anything else on those paths (a query string, a body that is not
XML, a partner code of other characters) goes on to FastAPI, whose routes answer it as before; the routes stay
registered, so the OpenAPI document is unchanged.
"""
from __future__ import annotations

import logging
import re

from fastapi import Request
from starlette.requests import ClientDisconnect

from hub.api.auth import auth_problem
from hub.api.edge import XML_MEDIA_TYPES, media_type_of
from hub.api.messages import PARTNER_SUBMIT_PERMISSION, SUBMIT_PATH, SUBMIT_PERMISSION, submit, submit_as_partner
from hub.api.problems import input_problem, try_later_handler
from hub.errors import AuthError, InputError, TryLater

log = logging.getLogger("hub.api")
PARTNER_PATH = re.compile(r"/api/v1/partners/([A-Za-z0-9_-]{1,40})/messages")


class IntakeFront:
    """Pure ASGI middleware: the intake routes (POST, XML, no query string) answered by their work directly."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string")
                and scope["path"].startswith("/api/v1/") and media_type_of(scope) in XML_MEDIA_TYPES):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        partner = PARTNER_PATH.fullmatch(path)
        if path != SUBMIT_PATH and partner is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            identity = scope["state"]["identity"]
            if partner is None:
                identity.require(SUBMIT_PERMISSION, doing=f"POST {path}")
                response = await submit(request, identity)
            else:
                identity.require(PARTNER_SUBMIT_PERMISSION, doing=f"POST {path}")
                response = await submit_as_partner(request, identity, partner.group(1))
        except InputError as exc:
            response = input_problem(exc)
        except TryLater as exc:
            response = await try_later_handler(request, exc)
        except AuthError as exc:
            response = auth_problem(exc)
        except ClientDisconnect:  # as RequestBounds: nobody is left to answer
            log.info("POST %s: the client disconnected before its request was read", path)
            return
        await response(scope, receive, send)

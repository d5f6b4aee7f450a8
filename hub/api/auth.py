"""Authentication of every /api request, and the per-route permission dependencies.

`ApiAuthentication` (an ASGI middleware) stops any request under /api without a valid token with 401
before routing, body parsing or validation: an anonymous caller learns nothing, not even which paths
exist. A successful check is reused by this process for HUB_TOKEN_CACHE_SECONDS (1 s): a busy caller's
token is read once a second instead of at every request, and a revocation or expiry still takes effect
within that second (`TokenCache`). Routes then declare what they need: `identity: Identity = Depends(allowed("cases:read"))`
answers 403 when the token's role does not have that permission (hub/access/dependencies.py); scope checks
(a consular agent's post, a partner's code) are made where the object is known (`Identity.check_post`,
`check_partner`).
"""
from __future__ import annotations

import hashlib
import time

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from hub.api.problems import problem
from hub.access.tokens import Identity, authenticate, parse_authorization
from hub.errors import AuthError, Unauthenticated

API_PREFIX = "/api"


def _under_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def auth_problem(exc: AuthError) -> JSONResponse:
    response = problem(exc.status, exc.title, exc.detail)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hub"' + (
            ', error="invalid_token"' if getattr(exc, "invalid_token", False) else "")
    return response


async def auth_error_handler(_request: Request, exc: AuthError) -> JSONResponse:
    return auth_problem(exc)


class TokenCache:
    """The identities of tokens checked in the last `seconds`, by the SHA-256 of the presented token (the
    secret itself is not kept as a key). Only successes are kept; at most `size` of them (the oldest half goes
    when full). Time is taken from `clock` (monotonic)."""

    def __init__(self, seconds: float, *, size: int = 10_000, clock=time.monotonic):
        self.seconds, self.size, self.clock = seconds, size, clock
        self._entries: dict[bytes, tuple[float, Identity]] = {}

    @staticmethod
    def _key(presented: str) -> bytes:
        return hashlib.sha256(presented.encode()).digest()

    def get(self, presented: str) -> Identity | None:
        if self.seconds <= 0:
            return None
        entry = self._entries.get(self._key(presented))
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, presented: str, identity: Identity, *, read_at: float | None = None) -> None:
        """Keep a successful check made from the token's row as read at `read_at` (this cache's clock; default
        now): its period runs from that reading, however long the check took after it."""
        if self.seconds <= 0:
            return
        if len(self._entries) >= self.size:
            for key in list(self._entries)[: self.size // 2]:
                del self._entries[key]
        self._entries[self._key(presented)] = ((self.clock() if read_at is None else read_at) + self.seconds,
                                               identity)


class ApiAuthentication:
    """Pure ASGI middleware: under /api, the bearer token is checked first; its Identity goes to
    `scope["state"]["identity"]` (request.state.identity). The `public` path prefixes (an app's `public_paths()`,
    hub/apps.py) are the exception: their routes answer anyone, and have no identity."""

    def __init__(self, app, *, hub, public: tuple[str, ...] = ()):
        self.app, self.hub, self.public = app, hub, tuple(p for p in public if _under_api(p) and p.endswith("/"))
        self.cache = TokenCache(hub.settings.token_cache_seconds)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self._needs_token(scope["path"]):
            presented = parse_authorization(Headers(scope=scope).get("authorization"))
            identity = self.cache.get(presented) if presented else None
            if identity is None:
                read_at = self.cache.clock()  # before the row is read: a revocation after it counts from here
                try:
                    identity = await run_in_threadpool(self._authenticate, presented)
                except AuthError as exc:
                    await auth_problem(exc)(scope, receive, send)
                    return
                self.cache.put(presented, identity, read_at=read_at)
            scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    def _needs_token(self, path: str) -> bool:
        return _under_api(path) and not any(path.startswith(prefix) for prefix in self.public)

    def _authenticate(self, presented: str | None) -> Identity:
        if not presented:  # no database round trip for the commonest refusal
            raise Unauthenticated("an API token is required: send Authorization: Bearer hub_<id>_<secret>")
        return authenticate(self.hub, presented)

"""The permission dependencies of the API's routes, for the engine's API (hub/api), the console's JSON twins
(hub/monitor) and the apps' routes alike: `identity: Identity = Depends(allowed("cases:read"))` answers 403 when
the caller's role lacks the permission. The token itself was checked before routing (hub/api/auth.py
ApiAuthentication), which put the caller's Identity on the request."""
from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from hub.access.tokens import Identity
from hub.errors import Unauthenticated

# Shown in the OpenAPI document (the "Authorize" button of /docs); the check itself is the middleware's.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="API token",
                           description="`Authorization: Bearer hub_<id>_<secret>` (see `hub tokens create`)")


async def current_identity(request: Request, _credentials=Depends(bearer_scheme)) -> Identity:
    identity = getattr(request.state, "identity", None)
    if identity is None:  # a route outside /api asked for an identity: refuse rather than guess
        raise Unauthenticated("an API token is required: send Authorization: Bearer hub_<id>_<secret>")
    return identity


def allowed(permission: str, *, doing: str | None = None):
    """A dependency returning the caller's Identity once its role has `permission` (else 403)."""
    async def dependency(request: Request, identity: Identity = Depends(current_identity)) -> Identity:
        identity.require(permission, doing=doing or f"{request.method} {request.url.path}")
        return identity
    dependency.__name__ = f"allowed_{permission.replace(':', '_').replace('-', '_')}"
    return dependency

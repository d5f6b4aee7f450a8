"""Mappings managed by integration staff: GET/POST under /api/v1/mappings (permissions mappings:read and
mappings:manage; hub/mappings/store.py does the work).

A mapping is named by its partner folder and file (`/api/v1/mappings/narsa/licence-request.to-narsa.xsl`). A new
version is the XSLT as the request body; it is compiled safely first (400 naming the line and the reason when
refused). Activation and rollback are audited with the caller and the reason; a version that does not exist or
is already active, one that fails its checks, and a lost race are 409s. `in_use_here` says which version this
process maps with (it follows an activation within seconds)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.errors import InputError, Problem
from hub.mappings import store, views
from hub.xml.text import unfit_character

router = APIRouter(prefix="/api/v1/mappings", tags=["mappings"])
PARTNER = r"^[a-z][a-z0-9-]{0,39}$"
FILE = r"^[a-z0-9][a-z0-9.-]{0,150}\.xsl$"
VERSION = r"^([0-9]{1,7}|[0-9a-f]{8,64})$"
MAX_XSLT_BYTES = 1024 * 1024


def _fit(value: str, field: str) -> str:
    bad = unfit_character(value)
    if bad:
        raise ValueError(f"{field} holds a character that cannot be kept: {bad}")
    return value


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="Why: kept in the audit log")
    expected_active: int | None = Field(None, ge=1, description="The version the caller saw active: 409 if it "
                                                               "changed meanwhile (a request sent twice)")

    @field_validator("reason")
    @classmethod
    def _reason_fit(cls, value: str) -> str:
        return _fit(value, "reason")


class Activation(Reason):
    version: int = Field(ge=1, le=9_999_999, description="The version to activate")
    expected_active: int | None = Field(None, ge=1, le=9_999_999,
                                        description="The version the caller saw active: 409 if another is now")


def _name(partner: str, file: str, session) -> str:
    mapping = f"{partner}/{file}"
    store.versions(session, mapping)  # NotFound (404) for an unknown mapping
    return mapping


@router.get("", summary="Every mapping: its partner, direction, routes, active version and last change")
def list_mappings(request: Request, identity: Identity = Depends(allowed("mappings:read"))):
    hub = request.app.state.hub
    with hub.sessions() as session:
        return {"items": views.listing(session, hub.config)}


@router.get("/schemas", summary="The partner schemas (XSD) with their sha256, as loaded at start (read-only)")
def list_schemas(request: Request, identity: Identity = Depends(allowed("mappings:read"))):
    with request.app.state.hub.sessions() as session:
        return {"items": store.schemas(session)}


PARTNER_PATH = Path(pattern=PARTNER, description="The partner's folder under mappings/")
FILE_PATH = Path(pattern=FILE, description="The stylesheet's file name in that folder")
VERSION_PATH = Path(pattern=VERSION, description="A version's number or its sha256 (8 hex digits at least)")


@router.get("/{partner}/{file}", summary="A mapping: its versions, activations and the version in use here")
def show_mapping(request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
                 identity: Identity = Depends(allowed("mappings:read"))):
    hub = request.app.state.hub
    with hub.sessions() as session:
        mapping = _name(partner, file, session)
        shown = views.detail(session, hub.config, mapping)
    shown["in_use_here"] = hub.mappings.version(mapping).sha256
    return shown


@router.get("/{partner}/{file}/versions", summary="A mapping's versions, oldest first")
def list_versions(request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
                  identity: Identity = Depends(allowed("mappings:read"))):
    with request.app.state.hub.sessions() as session:
        return {"items": [v.as_dict() for v in store.versions(session, f"{partner}/{file}")]}


@router.get("/{partner}/{file}/versions/{version}", summary="A version's XSLT as stored",
            response_class=Response, responses={200: {"content": {"application/xml": {}}}})
def version_xslt(request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
                 version: str = VERSION_PATH, identity: Identity = Depends(allowed("mappings:read"))):
    with request.app.state.hub.sessions() as session:
        found = store.get(session, f"{partner}/{file}", version)
    return Response(found.xslt, media_type="application/xml",
                    headers={"X-Mapping-Version": str(found.number), "X-Mapping-Sha256": found.sha256})


@router.post("/{partner}/{file}/versions", status_code=201,
             summary="Add a version: the XSLT as the body, compiled safely first (400 with the line and reason)")
async def add_version(request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
                      comment: str = Query("", max_length=500, description="What changed and why"),
                      identity: Identity = Depends(allowed("mappings:manage"))):
    hub = request.app.state.hub
    body = await request.body()
    if not body:
        raise InputError("the XSLT is the request body", [Problem("empty", path="body")])
    if len(body) > MAX_XSLT_BYTES:
        raise InputError(f"a stylesheet is at most {MAX_XSLT_BYTES} bytes", [Problem("too large", path="body")])
    bad = unfit_character(comment)
    if bad:
        raise InputError(f"comment: {bad}", [Problem(bad, path="query.comment")])
    with hub.sessions.begin() as session:
        mapping = _name(partner, file, session)  # versions of the mappings the hub knows only
        version = store.add_version(session, mapping, body, author=identity.actor, comment=comment,
                                    mappings_dir=hub.settings.mappings_dir)
    return version.as_dict()


@router.get("/{partner}/{file}/diff", response_class=PlainTextResponse,
            summary="A unified diff of two versions' XSLT")
def diff_versions(request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
                  older: str = Query(alias="from", pattern=VERSION), newer: str = Query(alias="to", pattern=VERSION),
                  identity: Identity = Depends(allowed("mappings:read"))):
    with request.app.state.hub.sessions() as session:
        return PlainTextResponse(views.diff(session, f"{partner}/{file}", older, newer))


@router.post("/{partner}/{file}/activate",
             summary="Activate a version once its checks pass (409: missing, already active, failing, or a lost race)")
def activate(body: Activation, request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
             identity: Identity = Depends(allowed("mappings:manage"))):
    hub = request.app.state.hub
    with hub.sessions.begin() as session:
        mapping = _name(partner, file, session)
        version = store.activate(session, mapping, body.version, actor=identity.actor, reason=body.reason,
                                 settings=hub.settings, expected_active=body.expected_active)
        replay = store.last_replay(session, mapping, version.number)
    hub.mappings.refresh(force=True)
    return {**version.as_dict(), "last_replay": replay}


@router.post("/{partner}/{file}/rollback", summary="Activate the version that was active before, in one step")
def rollback(body: Reason, request: Request, partner: str = PARTNER_PATH, file: str = FILE_PATH,
             identity: Identity = Depends(allowed("mappings:manage"))):
    hub = request.app.state.hub
    with hub.sessions.begin() as session:
        mapping = _name(partner, file, session)
        version = store.rollback(session, mapping, actor=identity.actor, reason=body.reason,
                                 settings=hub.settings, expected_active=body.expected_active)
    hub.mappings.refresh(force=True)
    return version.as_dict()

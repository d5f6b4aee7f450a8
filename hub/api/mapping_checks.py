"""Try a mapping version before it goes live: POST /api/v1/mappings/{name}/test, /preview and /replay
(permission mappings:read: integration staff and administrators). The reports are hub/mappings/checks.py's.

`name` is the mapping's path under mappings/ (e.g. narsa/licence-request.to-narsa.xsl); `xslt` in the body is
the version to try (absent: the active version). A preview on a stored message and a replay show what the hub
would send, personal data included: each is written to the audit log, naming the caller (a replay with its counts
and the version's sha256, which activation shows: `checks.last_replay`)."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.mappings import checks, personal_data, store
from hub.mappings.catalogue import active_stylesheet, describe

router = APIRouter(prefix="/api/v1/mappings", tags=["mappings"])
MAX_XSLT_CHARACTERS = 1_000_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    xslt: str | None = Field(None, max_length=MAX_XSLT_CHARACTERS,
                             description="The version to try, as text (absent: the active version)")


class PreviewBody(_Body):
    message_id: str | None = Field(None, min_length=1, max_length=80, description="A stored message's id")
    document: str | None = Field(None, max_length=MAX_XSLT_CHARACTERS * 10, description="A document to map")


class ReplayBody(_Body):
    last: int | None = Field(None, ge=1, le=100_000, description="The last N messages (default 1000; at most "
                             "100,000 in one request: the command line has no bound)")
    since: dt.datetime | None = Field(None, description="Messages received from this moment (UTC if naive)")
    until: dt.datetime | None = Field(None, description="Messages received before this moment")


def _version(hub, name: str, body: _Body) -> bytes:
    if body.xslt is not None:
        return body.xslt.encode("utf-8")
    return active_stylesheet(hub, describe(hub.config, hub.settings, name))


@router.post("/{name:path}/test", summary="Run a version's sample cases and the personal-data check")
def test_version(name: str, request: Request, body: _Body | None = None,
                 identity: Identity = Depends(allowed("mappings:read"))):
    hub = request.app.state.hub
    xslt = _version(hub, name, body or _Body())
    report = checks.run_cases(name, xslt, hub.settings, config=hub.config, schemas=hub.schemas)
    violations = personal_data.personal_data_violations(name, xslt, hub.settings, config=hub.config)
    return {**report.as_dict(), "personal_data": violations, "passed": report.passed and not violations}


@router.post("/{name:path}/preview", summary="Run a version on a stored message or a document")
def preview_version(name: str, body: PreviewBody, request: Request,
                    identity: Identity = Depends(allowed("mappings:read"))):
    hub = request.app.state.hub
    document = body.document.encode("utf-8") if body.document is not None else None
    return checks.preview(hub, name, _version(hub, name, body), message_id=body.message_id, document=document,
                          actor=identity.actor).as_dict()


@router.post("/{name:path}/replay", summary="Run a version over the stored history of the routes using it")
def replay_version(name: str, body: ReplayBody, request: Request,
                   identity: Identity = Depends(allowed("mappings:read"))):
    hub = request.app.state.hub
    return store.replay(hub, name, _version(hub, name, body), last=body.last, since=body.since, until=body.until,
                        actor=identity.actor).as_dict()

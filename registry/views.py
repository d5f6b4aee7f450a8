"""Registry HTTP API under /api/v1: posts, citizens, cases, and each service's own endpoints.

Thin: validation here, work in registry/service.py and the service modules. Every route names the
permission it needs (hub/access/tokens.py); a consular agent reaches only the citizens and cases of their post,
and lists are masked (registry/outputs.py)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, field_validator
from sqlalchemy import func, select

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.errors import BadCursor, ValueRefused
from registry import audit, case_actions, cases, catalogue, citizen_search, citizens, deadlines, post_views, service
from registry.inputs import CNIE, POST_CODE, PersonIn, StrictIn, Text, address_lines_fit
from registry.models import Case, Post
from registry.outputs import case_out, citizen_out, post_out
from registry.statuses import final_statuses

base = APIRouter(prefix="/api/v1", tags=["registry"])


class CitizenIn(PersonIn):
    post_code: Text = Field(pattern=POST_CODE, description="Consular post of registration")
    country: Text = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of residence")
    city: Text = Field(min_length=1, max_length=80)
    address_lines: Text = Field(min_length=1, max_length=400, description="The address abroad, 1 to 3 lines "
                                                                         "of up to 100 characters")

    _address_lines = field_validator("address_lines")(address_lines_fit)


@base.get("/posts", summary="Consular posts (reference data)")
def list_posts(request: Request, country: str | None = Query(None, max_length=40),
               active: bool | None = Query(None, description="true: the open posts only; false: the closed ones"),
               _identity: Identity = Depends(allowed("posts:read"))):
    query = select(Post).order_by(Post.country, Post.city)
    if country:
        query = query.where(Post.country == country.upper())
    if active is not None:
        query = query.where(Post.active == active)
    with request.app.state.hub.sessions() as session:
        return [post_out(p) for p in session.scalars(query)]


@base.get("/posts/{code}")
def get_post(code: str, request: Request, _identity: Identity = Depends(allowed("posts:read"))):
    with request.app.state.hub.sessions() as session:
        return post_out(service.get_post(session, code=code))


@base.post("/citizens", status_code=202, summary="Register a citizen at a consular post: the record is PENDING "
                                                 "until DGSN's identity check (the registration case it opens)")
async def register_citizen(body: CitizenIn, request: Request, identity: Identity = Depends(allowed("registry:act"))):
    """The citizen is recorded PENDING and a NEW consular registration case is opened and sent to DGSN
    (`registration_case`): DGSN's answer makes the citizen ACTIVE (MATCH) or REJECTED. A CNIE already held by
    a live record (PENDING or ACTIVE) is refused, 409 naming it; a record with the same names and birth date
    is named in `warnings` (NEAR_DUPLICATE) and the registration goes ahead."""
    identity.check_post(body.post_code, doing=f"registering a citizen at {body.post_code}")
    registry = request.app.state.registry

    def work() -> tuple[str, str, list[dict]]:
        with registry.hub.sessions.begin() as session:
            citizen, warnings = citizens.register(session, actor=identity.actor, scope=identity.post_scope,
                                                  **body.model_dump())
            audit.record(registry.hub, session, identity, audit.CITIZEN_REGISTERED, citizen.registration_id,
                         f"at {citizen.post_code}, pending DGSN's identity check")
            case = service.open_case(session, service="CONSULAR_REGISTRATION", citizen=citizen,
                                     details={"kind": "NEW", "address": None, "address_change": None},
                                     actor=identity.case_actor)
            audit.record(registry.hub, session, identity, audit.CASE_OPENED, case.reference,
                         f"CONSULAR_REGISTRATION NEW at {case.post_code}")
            registration_id, reference = citizen.registration_id, case.reference
        registry.submit_case(reference)
        return registration_id, reference, warnings

    registration_id, reference, warnings = await run_in_threadpool(work)
    with registry.hub.sessions() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        case = service.get_case(session, reference=reference)
        return {**citizen_out(citizen), "warnings": warnings,
                "registration_case": {"reference": case.reference, "status": case.status,
                                      "detail": "the citizen is ACTIVE once DGSN's identity check matches "
                                                "(REJECTED otherwise): follow this case"}}


class CorrectionIn(StrictIn):
    """The fields to correct (only those given change); civil data needs a reason."""
    given_name_latin: Text | None = Field(None, min_length=1, max_length=100)
    family_name_latin: Text | None = Field(None, min_length=1, max_length=100)
    given_name_arabic: Text | None = Field(None, min_length=1, max_length=100)
    family_name_arabic: Text | None = Field(None, min_length=1, max_length=100)
    birth_date: dt.date | None = None
    birth_place: Text | None = Field(None, max_length=100)
    sex: Literal["F", "M"] | None = None
    cnie: Text | None = Field(None, pattern=CNIE)
    passport_number: Text | None = Field(None, pattern=r"^[A-Z0-9]{6,9}$")
    country: Text | None = Field(None, pattern=r"^[A-Z]{2}$")
    city: Text | None = Field(None, min_length=1, max_length=80)
    address_lines: Text | None = Field(None, min_length=1, max_length=400)
    phone: Text | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    email: Text | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    reason: Text = Field("", max_length=300, description="Why (required for civil data: the document that "
                                                         "proves it)")

    _address_lines = field_validator("address_lines")(address_lines_fit)

    def changes(self) -> dict:
        """The fields given, as they are to be stored; a field the record cannot do without may not be emptied."""
        given = self.model_dump(exclude_unset=True, exclude={"reason"})
        for field, value in given.items():
            if value is None and field not in citizens.CLEARABLE:
                raise ValueRefused(field, f"{field} cannot be emptied")
        return given


class DeathIn(StrictIn):
    died_on: dt.date = Field(description="The date of death")
    reason: Text = Field(min_length=1, max_length=300, description="How the post knows (the death certificate)")


class TransferIn(StrictIn):
    post_code: Text = Field(pattern=POST_CODE, description="The open post the citizen moves to")
    reason: Text = Field(min_length=1, max_length=300)


def _change_citizen(request: Request, identity: Identity, registration_id: str, doing: str, change) -> dict:
    """Run `change(session, citizen)` on a citizen of the caller's post, audited by what it returns
    ((action, detail), or None when nothing changed); the citizen as it is afterwards."""
    hub = request.app.state.hub
    with hub.sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        identity.check_post(citizen.post_code, doing=f"{doing} citizen {registration_id}")
        done = change(session, citizen)
        if done is not None:
            audit.record(hub, session, identity, done[0], citizen.registration_id, done[1])
        return citizen_out(citizen)


@base.post("/citizens/{registration_id}/corrections", summary="Correct a citizen's civil data or contact details "
                                                              "(each change kept in the citizen's history)")
def correct_citizen(registration_id: str, body: CorrectionIn, request: Request,
                    identity: Identity = Depends(allowed("registry:act"))):
    changes = body.changes()
    made: list[dict] = []

    def change(session, citizen):
        rows = citizens.correct(session, citizen, changes, reason=body.reason, actor=identity.actor,
                                scope=identity.post_scope)
        made.extend({"field": r.field, "kind": r.kind} for r in rows)
        return (audit.CITIZEN_CORRECTED, ", ".join(r.field for r in rows)) if rows else None

    citizen = _change_citizen(request, identity, registration_id, "correcting", change)
    return {**citizen, "changed": made}


@base.post("/citizens/{registration_id}/death", summary="Record a citizen's death: no new case but those about "
                                                        "the death (repatriation, death transcription)")
def record_death(registration_id: str, body: DeathIn, request: Request,
                 identity: Identity = Depends(allowed("registry:act"))):
    def change(session, citizen):
        if citizens.mark_deceased(session, citizen, died_on=body.died_on, reason=body.reason, actor=identity.actor):
            return audit.CITIZEN_DECEASED, f"died on {body.died_on.isoformat()}"
        return None

    return _change_citizen(request, identity, registration_id, "recording the death of", change)


@base.post("/citizens/{registration_id}/transfer", summary="Transfer a citizen to another open post (both posts "
                                                           "see it in the citizen's history)")
def transfer_citizen(registration_id: str, body: TransferIn, request: Request,
                     identity: Identity = Depends(allowed("registry:act"))):
    def change(session, citizen):
        row = citizens.transfer(session, citizen, to_post=body.post_code, reason=body.reason, actor=identity.actor)
        return audit.CITIZEN_TRANSFERRED, f"from {row.old_value} to {row.new_value}"

    return _change_citizen(request, identity, registration_id, "transferring", change)


@base.get("/citizens/{registration_id}/history", summary="What changed in a citizen's record: old and new values, "
                                                         "who, when, why")
def citizen_history(registration_id: str, request: Request, identity: Identity = Depends(allowed("registry:read"))):
    """The citizen's post (and roles without a post) sees every change; a post the citizen was transferred
    from sees the changes made while the citizen was there, the transfer included; any other post: 403."""
    hub = request.app.state.hub
    with hub.sessions.begin() as session:  # the read and its audit entry together
        citizen = service.get_citizen(session, registration_id=registration_id)
        rows = citizens.history(session, citizen, identity)
        audit.record(hub, session, identity, audit.CITIZEN_VIEWED, citizen.registration_id, "history")
        return {"registration_id": citizen.registration_id, "changes": [citizens.change_out(r) for r in rows]}


@base.get("/citizens", summary="Find citizens by name (Latin or Arabic, any word order), CNIE, passport, birth date, "
                             "post or status, a page at a time (identity fields masked; a consular agent finds "
                             "their post's)")
def search_citizens(request: Request,
                    q: str | None = Query(None, max_length=200, description="a name, a registration id, a CNIE or a "
                                          "passport number; at least two letters"),
                    cnie: str | None = Query(None, max_length=10), passport_number: str | None = Query(None, max_length=12),
                    birth_date: dt.date | None = Query(None), post_code: str | None = Query(None, pattern=cases.POST),
                    status: str | None = Query(None, pattern=r"^[A-Za-z_]{1,12}$"),
                    cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page"),
                    limit: int = Query(50, ge=1, le=citizen_search.MAX_LIMIT),
                    identity: Identity = Depends(allowed("registry:read"))):
    """registry/citizen_search.py: names match whatever their case, accents or Arabic letter forms (أ إ آ ٱ as ا,
    ة as ه, ى as ي, no harakat or tatweel), each query word a whole name word or, from three letters, its start.
    `next_cursor` (null on the last page) is passed as `cursor` with the same filters for the next page."""
    with request.app.state.hub.sessions() as session:
        page = citizen_search.search(session, identity, q=q, cnie=cnie, passport_number=passport_number,
                                     birth_date=birth_date, post_code=post_code.upper() if post_code else None,
                                     status=status, cursor=cursor, limit=limit)
        return {"citizens": [citizen_out(c, masked=True) for c in page.citizens], "next_cursor": page.next_cursor}


@base.get("/citizens/{registration_id}")
def get_citizen(registration_id: str, request: Request, identity: Identity = Depends(allowed("registry:read"))):
    hub = request.app.state.hub
    with hub.sessions.begin() as session:  # the read and its audit entry together
        citizen = service.get_citizen(session, registration_id=registration_id)
        identity.check_post(citizen.post_code, doing=f"reading citizen {registration_id}")
        audit.record(hub, session, identity, audit.CITIZEN_VIEWED, citizen.registration_id)
        return citizen_out(citizen)


@base.get("/cases/{reference}", summary="A case with its status history and documents")
def get_case(reference: str, request: Request, identity: Identity = Depends(allowed("registry:read"))):
    hub = request.app.state.hub
    with hub.sessions.begin() as session:  # the read and its audit entry together
        case = service.get_case(session, reference=reference)
        identity.check_post(case.post_code, doing=f"reading case {reference}")
        audit.record(hub, session, identity, audit.CASE_VIEWED, case.reference)
        return case_out(case, full=True, viewer=identity)


@base.get("/cases", summary="Cases, newest first or overdue first, a page at a time (identity fields masked; a "
                             "consular agent sees their post's)")
def list_cases(request: Request, response: Response, status: str | None = Query(None, pattern=cases.STATUS),
               post_code: str | None = Query(None, pattern=cases.POST),
               service_name: str | None = Query(None, alias="service", pattern=cases.SERVICE),
               registration_id: str | None = Query(None, pattern=cases.REGISTRATION_ID,
                                                   description="only this citizen's cases"),
               opened_from: dt.date | None = Query(None, description="opened on or after this day (UTC)"),
               opened_to: dt.date | None = Query(None, description="opened on or before this day (UTC)"),
               overdue: bool = Query(False, description="only the cases past their service's answer deadline "
                                                        "(config/services.yaml)"),
               sort: Literal["newest", "overdue"] = Query("newest", description="overdue: the cases past their "
                                                                                "deadline first, then the newest"),
               cursor: str | None = Query(None, pattern=cases.CURSOR,
                                          description="the next page: the X-Next-Cursor of the page before"),
               offset: int = Query(0, ge=0, le=cases.MAX_OFFSET,
                                   description="deprecated (kept for one release): cases skipped; use cursor"),
               limit: int = Query(50, ge=1, le=1000),
               identity: Identity = Depends(allowed("registry:read"))):
    """The same search as the console's case list (registry/cases.py). Each case says when its answer is due
    (`deadline_at`) and whether it is past it (`overdue`). The body is the page's cases; when more follow, the
    `X-Next-Cursor` header (and a `Link: <...>; rel="next"`) gives the cursor of the next page."""
    if cursor and offset:
        raise BadCursor("cursor: give either cursor or offset, not both")
    after = cases.read_cursor(cursor, sort) if cursor else None
    registry = request.app.state.registry
    with request.app.state.hub.sessions() as session:
        found = cases.search(session, registry.deadlines, identity, service=service_name, status=status,
                             post_code=post_code, registration_id=registration_id, opened_from=opened_from,
                             opened_to=opened_to, overdue=overdue, sort=sort, after=after, offset=offset,
                             limit=limit + 1)
        page = [{**case_out(f.case), "deadline_at": f.deadline_at.isoformat() if f.deadline_at else None,
                 "overdue": f.overdue} for f in found[:limit]]
    if len(found) > limit:
        following = cases.cursor_after(found[limit - 1], sort)
        response.headers["X-Next-Cursor"] = following
        link = request.url.remove_query_params(["cursor", "offset"]).include_query_params(cursor=following)
        response.headers["Link"] = f'<{link.path}?{link.query}>; rel="next"'
    return page


@base.get("/services", summary="The consular services: their final statuses, answer deadline, how many cases are "
                          "in each status and how many are past their deadline")
def list_services(request: Request, identity: Identity = Depends(allowed("registry:read"))):
    query = select(Case.service, Case.status, func.count()).group_by(Case.service, Case.status)
    if identity.post_scope is not None:  # a consular agent counts their post's cases
        query = query.where(Case.post_code == identity.post_scope)
    with request.app.state.hub.sessions() as session:
        counts = session.execute(query).all()
    registry = request.app.state.registry
    with request.app.state.hub.sessions() as session:
        late = deadlines.overdue_counts(session, registry.deadlines, post_code=identity.post_scope)
    out = {m.SERVICE: {"service": m.SERVICE, "final_statuses": sorted(final_statuses(m.SERVICE)), "cases": {},
                       "answer_deadline_seconds": registry.deadlines[m.SERVICE].seconds,
                       "overdue": late.get(m.SERVICE, 0)}
           for m in catalogue.modules()}
    for service_name, status, count in counts:
        out.setdefault(service_name, {"service": service_name, "final_statuses": [], "cases": {}})["cases"][status] = count
    return list(out.values())


# The registry's whole API: the routes above, then each service module's own.
router = APIRouter()
router.include_router(base)
router.include_router(case_actions.router)
router.include_router(post_views.router)  # administrators keep the posts
for _module in catalogue.modules():
    router.include_router(_module.router)

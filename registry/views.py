"""Registry HTTP API under /api/v1: posts, citizens, cases, and each service's own endpoints.

Thin: validation here, work in registry/service.py and the service modules. Every route names the
permission it needs (hub/access/tokens.py); a consular agent reaches only the citizens and cases of their post,
and lists are masked (registry/outputs.py)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy import func, select

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from registry import audit, cases, catalogue, citizen_search, deadlines, service
from registry.inputs import POST_CODE, PersonIn, Text
from registry.models import Case, Post
from registry.outputs import case_out, citizen_out, post_out
from registry.statuses import final_statuses

base = APIRouter(prefix="/api/v1", tags=["registry"])


class CitizenIn(PersonIn):
    post_code: Text = Field(pattern=POST_CODE, description="Consular post of registration")
    country: Text = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of residence")
    city: Text = Field(min_length=1, max_length=80)
    address_lines: Text = ""


@base.get("/posts", summary="Consular posts (reference data)")
def list_posts(request: Request, country: str | None = Query(None, max_length=40), _identity: Identity = Depends(allowed("posts:read"))):
    query = select(Post).order_by(Post.country, Post.city)
    if country:
        query = query.where(Post.country == country.upper())
    with request.app.state.hub.sessions() as session:
        return [post_out(p) for p in session.scalars(query)]


@base.get("/posts/{code}")
def get_post(code: str, request: Request, _identity: Identity = Depends(allowed("posts:read"))):
    with request.app.state.hub.sessions() as session:
        return post_out(service.get_post(session, code=code))


@base.post("/citizens", status_code=201, summary="Register a citizen at a consular post")
def register_citizen(body: CitizenIn, request: Request, identity: Identity = Depends(allowed("registry:act"))):
    identity.check_post(body.post_code, doing=f"registering a citizen at {body.post_code}")
    hub = request.app.state.hub
    with hub.sessions.begin() as session:
        citizen = service.register_citizen(session, **body.model_dump())
        audit.record(hub, session, identity, audit.CITIZEN_REGISTERED, citizen.registration_id, f"at {citizen.post_code}")
        return citizen_out(citizen)


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


@base.get("/cases", summary="Cases, newest first or overdue first (identity fields masked; a consular agent "
                             "sees their post's)")
def list_cases(request: Request, status: str | None = Query(None, pattern=cases.STATUS),
               post_code: str | None = Query(None, pattern=cases.POST),
               service_name: str | None = Query(None, alias="service", pattern=cases.SERVICE),
               opened_from: dt.date | None = Query(None, description="opened on or after this day (UTC)"),
               opened_to: dt.date | None = Query(None, description="opened on or before this day (UTC)"),
               overdue: bool = Query(False, description="only the cases past their service's answer deadline "
                                                        "(config/services.yaml)"),
               sort: Literal["newest", "overdue"] = Query("newest", description="overdue: the cases past their "
                                                                                "deadline first, then the newest"),
               offset: int = Query(0, ge=0, le=cases.MAX_OFFSET, description="cases skipped: the next page"),
               limit: int = Query(50, ge=1, le=1000),
               identity: Identity = Depends(allowed("registry:read"))):
    """The same search as the console's case list (registry/cases.py). Each case says when its answer is due
    (`deadline_at`) and whether it is past it (`overdue`)."""
    registry = request.app.state.registry
    with request.app.state.hub.sessions() as session:
        found = cases.search(session, registry.deadlines, identity, service=service_name, status=status,
                             post_code=post_code, opened_from=opened_from, opened_to=opened_to, overdue=overdue,
                             sort=sort, offset=offset, limit=limit)
        return [{**case_out(f.case), "deadline_at": f.deadline_at.isoformat() if f.deadline_at else None,
                 "overdue": f.overdue} for f in found]


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
for _module in catalogue.modules():
    router.include_router(_module.router)

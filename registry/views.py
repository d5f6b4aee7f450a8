"""Registry HTTP API under /api/v1: posts, citizens, cases. Thin: validation here, work in service."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from registry import licence, service
from registry.models import Case, Citizen, Post
from registry.statuses import LICENCE_AUTHENTICATION

router = APIRouter(prefix="/api/v1", tags=["registry"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CitizenIn(_In):
    post_code: str = Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{2,8}$", description="Consular post of registration")
    given_name_latin: str = Field(min_length=1, max_length=100)
    family_name_latin: str = Field(min_length=1, max_length=100)
    given_name_arabic: str = Field(min_length=1, max_length=100)
    family_name_arabic: str = Field(min_length=1, max_length=100)
    birth_date: dt.date
    birth_place: str = ""
    sex: Literal["F", "M"]
    cnie: str | None = Field(None, pattern=r"^[A-Z]{1,2}[0-9]{5,6}$")
    passport_number: str | None = Field(None, pattern=r"^[A-Z0-9]{6,9}$")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of residence")
    city: str = Field(min_length=1, max_length=80)
    address_lines: str = ""
    phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class LicenceIn(_In):
    number: str = Field(pattern=r"^[0-9]{1,2}/[0-9]{4,8}$", examples=["12/345678"])
    categories: list[Literal["A", "A1", "B", "C", "D", "EB", "EC", "ED"]] = Field(min_length=1, max_length=8)
    issue_date: dt.date


class LicenceCaseIn(_In):
    service: Literal["LICENCE_AUTHENTICATION"] = LICENCE_AUTHENTICATION
    registration_id: str = Field(pattern=r"^MRE-[0-9]{7,10}$")
    licence: LicenceIn


def post_out(p: Post) -> dict:
    return {"code": p.code, "name": p.name, "kind": p.kind, "country": p.country, "city": p.city,
            "jurisdiction": p.jurisdiction}


def citizen_out(c: Citizen) -> dict:
    return {"registration_id": c.registration_id, "post_code": c.post_code,
            "given_name_latin": c.given_name_latin, "family_name_latin": c.family_name_latin,
            "given_name_arabic": c.given_name_arabic, "family_name_arabic": c.family_name_arabic,
            "birth_date": c.birth_date.isoformat(), "birth_place": c.birth_place, "sex": c.sex, "cnie": c.cnie,
            "passport_number": c.passport_number, "country": c.country, "city": c.city,
            "address_lines": c.address_lines, "phone": c.phone, "email": c.email,
            "registered_at": c.registered_at.isoformat()}


def case_out(c: Case, *, full: bool = False) -> dict:
    out = {"reference": c.reference, "service": c.service, "status": c.status, "post_code": c.post_code,
           "registration_id": c.citizen.registration_id, "details": c.details, "outcome": c.outcome,
           "request_message_id": c.request_message_id, "partner_reference": c.partner_reference,
           "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}
    if full:
        out["history"] = [{"at": e.at.isoformat(), "status": e.status, "actor": e.actor, "note": e.note}
                          for e in c.history]
        out["documents"] = [{"kind": d.kind, "source_message_id": d.source_message_id,
                             "received_at": d.received_at.isoformat(), "xml": d.content.decode()}
                            for d in c.documents]
    return out


@router.get("/posts", summary="Consular posts (reference data)")
def list_posts(request: Request, country: str | None = None):
    query = select(Post).order_by(Post.country, Post.city)
    if country:
        query = query.where(Post.country == country.upper())
    with request.app.state.hub.sessions() as session:
        return [post_out(p) for p in session.scalars(query)]


@router.get("/posts/{code}")
def get_post(code: str, request: Request):
    with request.app.state.hub.sessions() as session:
        return post_out(service.get_post(session, code=code))


@router.post("/citizens", status_code=201, summary="Register a citizen at a consular post")
def register_citizen(body: CitizenIn, request: Request):
    with request.app.state.hub.sessions.begin() as session:
        return citizen_out(service.register_citizen(session, **body.model_dump()))


@router.get("/citizens/{registration_id}")
def get_citizen(registration_id: str, request: Request):
    with request.app.state.hub.sessions() as session:
        return citizen_out(service.get_citizen(session, registration_id=registration_id))


@router.post("/cases", status_code=201, summary="Open a case; its request goes to the partner through the hub")
async def open_case(body: LicenceCaseIn, request: Request):
    hub, registry = request.app.state.hub, request.app.state.registry

    def work() -> str:
        with hub.sessions.begin() as session:
            citizen = service.get_citizen(session, registration_id=body.registration_id)
            case = service.open_case(session, service=licence.SERVICE, prefix=licence.PREFIX, citizen=citizen,
                                     details=licence.licence_details(**body.licence.model_dump()), actor="consular-app")
            reference = case.reference
        registry.submit_case(reference)
        return reference

    reference = await run_in_threadpool(work)
    with hub.sessions() as session:
        return case_out(service.get_case(session, reference=reference), full=True)


@router.get("/cases/{reference}", summary="A case with its status history and documents")
def get_case(reference: str, request: Request):
    with request.app.state.hub.sessions() as session:
        return case_out(service.get_case(session, reference=reference), full=True)


@router.get("/cases", summary="Cases, newest first")
def list_cases(request: Request, status: str | None = None, post_code: str | None = None,
               limit: int = Query(50, ge=1, le=500)):
    query = select(Case).order_by(Case.id.desc()).limit(limit)
    if status:
        query = query.where(Case.status == status.upper())
    if post_code:
        query = query.where(Case.post_code == post_code)
    with request.app.state.hub.sessions() as session:
        return [case_out(c) for c in session.scalars(query)]

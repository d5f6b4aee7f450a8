"""The citizens in the console (hub/monitor): find them, read one, correct, record a death, transfer.

    /monitor/citizens                          search (citizen_search.search: names in either script, CNIE,
                                               passport, birth date, post, status), masked list, paged by cursor
    /monitor/citizens/{registration_id}        one citizen: the record, its history (registry/citizens.py), its
                                               cases, and the forms below for the roles that act (registry:act)
    POST .../contacts | .../civil | .../death | .../transfer   the forms' actions (CSRF-checked), each audited
                                               like the API's (registry/views.py), then back to the page

Who sees what: registry:read (supervisors, administrators: every citizen; a consular agent: their post's, another
post's citizen is refused, 403, and never listed). Reading a citizen's page is audited (CITIZEN_VIEWED). A refused
action (a value the record cannot take, a CNIE already held, a closed post) is an error page naming why;
nothing is changed.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from hub.access.tokens import Identity
from hub.errors import InputError, Problem
from hub.monitor.catalogue import N_
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from registry import audit, citizen_search, citizens, service
from registry.console import service_label, status_label
from registry.inputs import REGISTRATION_ID
from registry.models import Case, Post
from registry.outputs import citizen_out
from registry.views import CorrectionIn, DeathIn, TransferIn

PAGE = 50
CASES_SHOWN = 50
READ, ACT = "registry:read", "registry:act"
CITIZEN_STATUS_LABELS = {"PENDING": N_("Pending identity check"), "ACTIVE": N_("Active"), "REJECTED": N_("Rejected"),
                         "DECEASED": N_("Deceased")}
CHANGE_LABELS = {"REGISTERED": N_("Registered"), "IDENTITY_CHECK": N_("Identity check"),
                 "CORRECTION": N_("Civil data corrected"), "CONTACT": N_("Contact details changed"),
                 "DECEASED": N_("Death recorded"), "TRANSFER": N_("Transferred")}
FIELD_LABELS = {"given_name_latin": N_("Given names (Latin)"), "family_name_latin": N_("Family name (Latin)"),
                "given_name_arabic": N_("Given names (Arabic)"), "family_name_arabic": N_("Family name (Arabic)"),
                "birth_date": N_("Birth date"), "birth_place": N_("Birth place"), "sex": N_("Sex"), "cnie": N_("CNIE"),
                "passport_number": N_("Passport number"), "country": N_("Country of residence"), "city": N_("City"),
                "address_lines": N_("Address abroad"), "phone": N_("Phone"), "email": N_("E-mail"),
                "status": N_("Status"), "post_code": N_("Post")}
CIVIL_FORM = ("given_name_latin", "family_name_latin", "given_name_arabic", "family_name_arabic", "birth_date",
              "birth_place", "sex", "cnie", "passport_number")
CONTACT_FORM = ("country", "city", "address_lines", "phone", "email")

router = APIRouter(prefix="/monitor", include_in_schema=False)


def _registry(request: Request):
    return request.app.state.registry


def checked(model: type[BaseModel], data: dict) -> BaseModel:
    """A form's fields as the API's model reads them; a refusal is a 400 naming the field (never a 500)."""
    try:
        return model(**data)
    except ValidationError as exc:
        problems = [Problem(str(e.get("msg", "invalid")), path=".".join(map(str, e.get("loc", ())))) for e in
                    exc.errors()[:20]]
        raise InputError(f"{len(problems)} problem(s) with: {', '.join(p.path for p in problems)}", problems) from None


# -- search --------------------------------------------------------------------------------------------------

@router.get("/citizens")
def search_page(request: Request, q: str | None = Query(None, max_length=100),
                cnie: str | None = Query(None, max_length=12), birth_date: dt.date | None = Query(None),
                post: str | None = Query(None, max_length=12),
                status: Literal["", "PENDING", "ACTIVE", "REJECTED", "DECEASED"] = Query(""),
                cursor: str | None = Query(None, max_length=200),
                done: str | None = Query(None, pattern=r"^transfer$"), seen: Viewer = Depends(viewer(READ))):
    identity = seen.identity
    asked = any((q, cnie, birth_date, post, status))
    with _registry(request).hub.reads() as session:
        found = citizen_search.search(session, identity, q=q or None, cnie=cnie or None, birth_date=birth_date,
                                      post_code=post or None, status=status or None, cursor=cursor,
                                      limit=PAGE) if asked else None
        rows = [citizen_out(c, masked=True) for c in found.citizens] if found else []
        posts = ([identity.post_scope] if identity.post_scope else
                 list(session.scalars(select(Post.code).order_by(Post.code))))
    filters = {"q": q or "", "cnie": cnie or "", "birth_date": birth_date.isoformat() if birth_date else "",
               "post": post or "", "status": status}
    next_url = url("/monitor/citizens", cursor=found.next_cursor, **filters) if found and found.next_cursor else None
    return render(request, seen, "citizens/search.html", rows=rows, filters=filters, asked=asked, posts=posts,
                  statuses=list(CITIZEN_STATUS_LABELS.items()), status_labels=CITIZEN_STATUS_LABELS,
                  done=done, next_url=next_url, first_url=url("/monitor/citizens", **filters) if cursor else None)


# -- one citizen ---------------------------------------------------------------------------------------------

def citizen_page_data(registry, registration_id: str, identity: Identity) -> dict:
    """The record, its history and its cases; the read is audited (CITIZEN_VIEWED) in the transaction that reads
    it."""
    hub = registry.hub
    with hub.sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        identity.check_post(citizen.post_code, doing=f"reading citizen {registration_id}")
        changes = [{"at": c.at, "kind": c.kind, "kind_label": CHANGE_LABELS.get(c.kind, c.kind), "field": c.field,
                    "field_label": FIELD_LABELS.get(c.field, c.field), "old": c.old_value, "new": c.new_value,
                    "actor": c.actor, "reason": c.reason, "post_code": c.post_code}
                   for c in citizens.history(session, citizen, identity)]
        found = session.scalars(select(Case).where(Case.citizen_id == citizen.id).order_by(Case.id.desc())
                                .limit(CASES_SHOWN))
        cases = [{"reference": c.reference, "service_label": service_label(c.service), "status": c.status,
                  "status_label": status_label(c.status), "post_code": c.post_code, "opened": c.created_at}
                 for c in found]
        posts = [(p.code, p.city) for p in session.scalars(select(Post).where(Post.active.is_(True),
                                                                            Post.code != citizen.post_code)
                                                          .order_by(Post.code))]
        audit.record(hub, session, identity, audit.CITIZEN_VIEWED, citizen.registration_id, "console")
        return {"citizen": citizen_out(citizen), "changes": changes, "cases": cases, "posts": posts}


@router.get("/citizens/{registration_id}")
def citizen_page(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                 done: str | None = Query(None, pattern=r"^(contacts|civil|death|transfer)$"),
                 seen: Viewer = Depends(viewer(READ))):
    data = citizen_page_data(_registry(request), registration_id, seen.identity)
    return render(request, seen, "citizens/citizen.html", done=done, status_labels=CITIZEN_STATUS_LABELS,
                  field_labels=FIELD_LABELS, civil_form=CIVIL_FORM, contact_form=CONTACT_FORM, **data)


def _act(request: Request, seen: Viewer, registration_id: str, doing: str, change) -> None:
    """`change(session, citizen)` on a citizen of the viewer's post; it returns the audit entry's (action,
    detail), or None when nothing changed."""
    hub = _registry(request).hub
    identity = seen.identity
    with hub.sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        identity.check_post(citizen.post_code, doing=f"{doing} citizen {registration_id}")
        done = change(session, citizen)
        if done is not None:
            audit.record(hub, session, identity, done[0], citizen.registration_id, f"{done[1]} (console)")


def _back(registration_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(url(f"/monitor/citizens/{registration_id}", done=done), status_code=303)


async def _form(request: Request, fields: tuple[str, ...]) -> dict:
    """The form's fields among `fields` (empty optional values as None, so that they clear)."""
    form = await request.form()
    return {name: (form.get(name) or None) for name in fields if name in form}


def _correction(fields: dict, reason: str) -> CorrectionIn:
    """Fields a record may lack may be emptied; an empty required one is left as it is."""
    kept = {k: v for k, v in fields.items() if v is not None or k in citizens.CLEARABLE}
    return checked(CorrectionIn, {**kept, "reason": reason})


@router.post("/citizens/{registration_id}/contacts")
async def contacts_action(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                          seen: Viewer = Depends(csrf_checked(ACT))):
    body = _correction(await _form(request, CONTACT_FORM), "")
    await run_in_threadpool(_act, request, seen, registration_id, "correcting", _corrector(body, seen))
    return _back(registration_id, "contacts")


@router.post("/citizens/{registration_id}/civil")
async def civil_action(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                       seen: Viewer = Depends(csrf_checked(ACT))):
    form = await request.form()
    body = _correction(await _form(request, CIVIL_FORM), str(form.get("reason") or ""))
    await run_in_threadpool(_act, request, seen, registration_id, "correcting", _corrector(body, seen))
    return _back(registration_id, "civil")


def _corrector(body: CorrectionIn, seen: Viewer):
    changes = body.changes()

    def change(session, citizen):
        rows = citizens.correct(session, citizen, changes, reason=body.reason, actor=seen.identity.actor,
                                scope=seen.identity.post_scope)
        return (audit.CITIZEN_CORRECTED, ", ".join(r.field for r in rows)) if rows else None
    return change


@router.post("/citizens/{registration_id}/death")
async def death_action(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                       seen: Viewer = Depends(csrf_checked(ACT))):
    form = await request.form()
    body = checked(DeathIn, {"died_on": form.get("died_on") or None, "reason": form.get("reason") or ""})

    def change(session, citizen):
        if citizens.mark_deceased(session, citizen, died_on=body.died_on, reason=body.reason,
                                  actor=seen.identity.actor):
            return audit.CITIZEN_DECEASED, f"died on {body.died_on.isoformat()}"
        return None

    await run_in_threadpool(_act, request, seen, registration_id, "recording the death of", change)
    return _back(registration_id, "death")


@router.post("/citizens/{registration_id}/transfer")
async def transfer_action(request: Request, registration_id: str = PathParam(pattern=REGISTRATION_ID),
                          seen: Viewer = Depends(csrf_checked(ACT))):
    form = await request.form()
    body = checked(TransferIn, {"post_code": form.get("post_code") or "", "reason": form.get("reason") or ""})

    def change(session, citizen):
        row = citizens.transfer(session, citizen, to_post=body.post_code, reason=body.reason,
                                actor=seen.identity.actor)
        return audit.CITIZEN_TRANSFERRED, f"from {row.old_value} to {row.new_value}"

    await run_in_threadpool(_act, request, seen, registration_id, "transferring", change)
    # the citizen is the other post's now: a consular agent can no longer open their page
    if seen.identity.post_scope is not None:
        return RedirectResponse(url("/monitor/citizens", done="transfer"), status_code=303)
    return _back(registration_id, "transfer")

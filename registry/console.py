"""The registry's part of the console (hub/monitor): the cases.

    /monitor/cases                         cases by service, status, post, citizen and day opened, overdue first,
                                           paged by cursor
    /monitor/cases/deadlines               each service's answer deadline against its partners' answer times
    /monitor/cases/{reference}             one case: its whole conversation across partners as one timeline
                                           (a repatriation's three clearances side by side), its status history
                                           with the state of its chain seal, and its documents
    /monitor/cases/{reference}/documents/{id}   a document's XML (personal data: each view is audited)
    POST /monitor/cases/{reference}/cancel|retry|reassign|match   the case page's buttons (registry/case_actions.py),
                                           for the roles that act on cases (registry:act), each behind a
                                           confirmation and the session's CSRF token, as the dead letters' resend

and for the overview (hub/apps.py ConsolePart): one tile per service (open cases by status, cases past their
deadline), and the overdue cases for the alerts. The same data is JSON for other tools: GET /api/v1/cases
(the list, registry/views.py), GET /api/v1/cases/{reference}/conversation and GET /api/v1/monitor/deadlines,
each computed by the function the page uses.

Who sees what: cases need registry:read (supervisors and administrators: every case; a consular agent: their
post's only, another post's case is refused, 403, and never listed; integration staff: none). The messages'
own timelines (each event, with its detail) are shown to the roles that read messages (messages:read); a
consular agent sees the conversation as messages and deliveries. Health data and restricted documents follow
registry/outputs.py. Reading a case (its page) is audited as CASE_VIEWED, a document's bytes as
DOCUMENT_VIEWED, like the API's reads and the payload views.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fastapi import APIRouter, Depends, Form, Path as PathParam, Query, Request
from fastapi.responses import RedirectResponse
from fastapi.concurrency import run_in_threadpool
from babel.dates import format_timedelta
from lxml import etree
from sqlalchemy import func, select

from hub.access.tokens import Identity
from hub.access.dependencies import allowed
from hub.apps import ConsolePart, NavItem
from hub.errors import Forbidden, NotFound, UnfitCharacter
from hub.monitor.catalogue import N_
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from hub.xml.safe import parse_trusted
from hub.xml.text import unfit_character
from registry import audit, case_actions, cases, catalogue, deadlines, service
from registry.canonical import PARTY
from registry.models import Case, CaseDocument, Post
from registry.outputs import WITHHELD, _may_read_document, case_out
from registry.statuses import CANCELLED, FAILED, cancellable, open_statuses, retryable

TEMPLATES = Path(__file__).parent / "templates"
PAGE = 50
OVERDUE_LIMIT = 500
READ = "registry:read"
ACT = "registry:act"
# a case holds a document printed for the citizen (registry/printing, GET /monitor/cases/{reference}/document.pdf)
# when it has one of these kinds, or is a judicial document with its delivery certificate sent
PRINTABLE_KINDS = {"CIVIL_STATUS_EXTRACT", "NARSA_ATTESTATION"}
CERTIFIED = {"SERVED", "REFUSED", "NOT_FOUND", "ADDRESSEE_UNKNOWN"}
DONE = {"cancelled": N_("The case was cancelled."), "retried": N_("The case was sent again."),
        "reassigned": N_("The case was handed to the other post."),
        "matched": N_("The document was matched to the citizen; it is now at their post.")}

SERVICE_LABELS = {
    "CONSULAR_REGISTRATION": N_("Consular registration"),
    "PASSPORT_APPLICATION": N_("Passport application"),
    "CIVIL_STATUS_EXTRACT": N_("Civil-status extract"),
    "TRANSCRIPTION": N_("Transcription"),
    "REPATRIATION": N_("Repatriation of remains"),
    "LICENCE_AUTHENTICATION": N_("Driving-licence authentication"),
    "JUDICIAL_DOCUMENT": N_("Judicial document"),
    "LIFE_CERTIFICATE": N_("Life certificate"),
}
STATUS_LABELS = {
    "SUBMITTED": N_("Submitted"), "AWAITING_PARTNER": N_("Awaiting the partner"), "FAILED": N_("Failed"),
    "AUTHENTIC": N_("Authentic"), "NOT_AUTHENTIC": N_("Not authentic"), "DISCREPANCY": N_("Discrepancy"),
    "IDENTITY_CHECK": N_("Identity check"), "ACTIVE": N_("Active"), "REJECTED": N_("Rejected"),
    "ACKNOWLEDGED": N_("Acknowledged"), "IN_PRODUCTION": N_("In production"), "SHIPPED": N_("Shipped"),
    "AVAILABLE_AT_POST": N_("Available at the post"), "DELIVERED": N_("Delivered"), "ISSUED": N_("Issued"),
    "NOT_FOUND": N_("Not found"), "TRANSCRIBED": N_("Transcribed"), "AWAITING_CLEARANCES": N_("Awaiting clearances"),
    "AUTHORISED": N_("Authorised"), "REFUSED": N_("Refused"), "ESCALATED": N_("Escalated"),
    "RECEIVED": N_("Received"), "AT_POST": N_("At the post"), "CERTIFYING": N_("Certifying"),
    "SERVED": N_("Served"), "ADDRESSEE_UNKNOWN": N_("Addressee unknown"), "BATCHED": N_("Batched"),
    "ACCEPTED": N_("Accepted"), "CANCELLED": N_("Cancelled"),
}
# what a message's timeline says of the exchange (intake's own steps, RECEIVED to VERIFIED and CLAIMED, are on
# the message's page)
CONVERSATION_EVENTS = {"ACCEPTED", "QUEUED", "SENT", "PARTNER_RECEIPT", "ANSWERED", "CORRELATED", "MAPPED_IN",
                       "RETRY_SCHEDULED", "DEAD_LETTERED", "RESENT", "SENT_AGAIN", "DUPLICATE", "PURGED"}
_REFERENCE = re.compile(cases.REFERENCE)


def duration(seconds: float | None, lang: str) -> str:
    """A duration in words of the viewer's language ("3 minutes"), or a dash."""
    if seconds is None:
        return "—"
    return format_timedelta(dt.timedelta(seconds=seconds), locale=lang, threshold=1.5)


def service_label(code: str) -> str:
    return SERVICE_LABELS.get(code, code)


def status_label(code: str) -> str:
    return STATUS_LABELS.get(code, code)


# -- the overview's tiles and the alerts' overdue cases ---------------------------------------------------

def service_tiles(registry, identity: Identity) -> list[dict]:
    """One tile per service: its open cases by status, its failed cases and those past their deadline (a
    consular agent: their post's). Nothing for a role that may not read cases."""
    if not identity.may(READ):
        return []
    post = identity.post_scope
    query = select(Case.service, Case.status, func.count()).group_by(Case.service, Case.status)
    if post is not None:
        query = query.where(Case.post_code == post)
    with registry.hub.reads() as session:
        counts: dict[str, dict[str, int]] = {}
        for service_name, status, n in session.execute(query):
            counts.setdefault(service_name, {})[status] = n
        late = deadlines.overdue_counts(session, registry.deadlines, post_code=post)
    tiles = []
    for module in catalogue.modules():
        code, here = module.SERVICE, counts.get(module.SERVICE, {})
        deadline = registry.deadlines[code]
        tiles.append({"service": code, "label": service_label(code),
                      "open": [{"status": s, "label": status_label(s), "count": here.get(s, 0),
                                "url": url("/monitor/cases", service=code, status=s)} for s in open_statuses(code)],
                      "open_total": sum(here.get(s, 0) for s in open_statuses(code)),
                      "failed": here.get(FAILED, 0), "overdue": late.get(code, 0),
                      "deadline": deadline.text, "deadline_seconds": deadline.seconds,
                      "url": url("/monitor/cases", service=code),
                      "overdue_url": url("/monitor/cases", service=code, overdue="1"),
                      "failed_url": url("/monitor/cases", service=code, status=FAILED)})
    return tiles


def overdue_items(registry, *, post_code: str | None = None, limit: int = OVERDUE_LIMIT) -> list[dict]:
    """The cases past their deadline, the longest overdue first (ConsolePart.overdue)."""
    with registry.hub.reads() as session:
        found = deadlines.overdue_cases(session, registry.deadlines, post_code=post_code, limit=limit)
    return [{**item, "url": f"/monitor/cases/{item['reference']}"} for item in found]


def console_part(registry) -> ConsolePart:
    return ConsolePart(templates=TEMPLATES, nav=(NavItem("/monitor/cases", N_("Cases"), READ),
                                                 NavItem("/monitor/citizens", N_("Citizens"), READ),
                                                 NavItem("/monitor/posts", N_("Posts"), "posts:read")),
                       tiles=lambda hub, identity: service_tiles(registry, identity),
                       tiles_template="cases/tiles.html",
                       overdue=lambda hub: overdue_items(registry))


# -- one case ------------------------------------------------------------------------------------------

def find_case(session, reference: str, identity: Identity) -> Case:
    """The case, if `identity` may read it: NotFound for an unknown (or malformed) reference, Forbidden for
    another post's case."""
    if not _REFERENCE.match(reference or ""):
        raise NotFound(f"no case with reference {reference[:60]!r}")
    case = service.get_case(session, reference=reference)
    identity.check_post(case.post_code, doing=f"reading case {reference}")
    return case


def conversation(registry, session, case: Case, identity: Identity) -> dict:
    """The case's messages across partners as one timeline, and each partner's leg (what the registry sent it,
    how the delivery went, what it answered). With messages:read, the entries are the messages' timeline events
    (with their details); otherwise one entry per message and per delivery's outcome."""
    messages = registry.hub.case_messages(cases.correlation_ids(session, case))
    detailed = identity.may("messages:read")
    entries, legs = [], {}

    def leg(partner: str) -> dict:
        return legs.setdefault(partner, {"partner": partner, "sent": [], "answers": []})

    for m in messages:
        outgoing = m["sender"] == PARTY
        deliveries = {d["id"]: d for d in m["deliveries"]}
        if outgoing:
            for d in m["deliveries"]:
                leg(d["partner"])["sent"].append({"message_id": m["id"], "type": m["type"], "state": d["state"],
                                                  "attempts": d["attempts"], "delivered_at": d["delivered_at"],
                                                  "last_error": d["last_error"] if detailed else None,
                                                  "received_at": m["received_at"]})
        else:
            leg(m["sender"])["answers"].append({"message_id": m["id"], "type": m["type"], "state": m["state"],
                                                "received_at": m["received_at"], "in_reply_to": m["in_reply_to"]})
        base = {"message_id": m["id"], "type": m["type"], "sender": m["sender"], "recipient": m["recipient"],
                "direction": "out" if outgoing else "in"}
        if detailed:
            for e in m["events"]:
                if e["kind"] not in CONVERSATION_EVENTS:
                    continue
                delivery = deliveries.get(e["delivery_id"])
                partner = delivery["partner"] if delivery else (m["recipient"] if outgoing else m["sender"])
                entries.append({**base, "at": e["at"], "partner": partner, "kind": e["kind"], "detail": e["detail"],
                                "sealed": e["sealed"]})
        else:
            entries.append({**base, "at": m["received_at"], "partner": m["recipient"] if outgoing else m["sender"],
                            "kind": "ACCEPTED", "detail": "", "sealed": None})
            for d in m["deliveries"]:
                if d["state"] != "PENDING":
                    entries.append({**base, "at": d["delivered_at"] or m["updated_at"], "partner": d["partner"],
                                    "kind": "SENT" if d["state"] == "DELIVERED" else "DEAD_LETTERED", "detail": "",
                                    "sealed": None})
    entries.sort(key=lambda e: e["at"])
    order = list(getattr(catalogue.module_for(case.service), "PARTNERS", ()))
    ranked = sorted(legs.values(), key=lambda lg: (order.index(lg["partner"]) if lg["partner"] in order else 99,
                                                   lg["partner"]))
    return {"entries": entries, "legs": [lg for lg in ranked if lg["partner"] != PARTY], "detailed": detailed,
            "messages": len(messages)}


def case_page_data(registry, reference: str, identity: Identity) -> dict:
    """Everything the case page shows; the read is audited (CASE_VIEWED) in the transaction that reads it."""
    hub = registry.hub
    with hub.sessions.begin() as session:
        case = find_case(session, reference, identity)
        shown = case_out(case, full=True, viewer=identity)
        talk = conversation(registry, session, case, identity)
        history = [{"at": e.at, "status": e.status, "label": status_label(e.status), "actor": e.actor, "note": e.note,
                    "seq": e.chain_seq, "chain_hash": e.chain_hash} for e in case.history]
        documents = [{"id": d.id, "kind": d.kind, "source_message_id": d.source_message_id,
                      "received_at": d.received_at, "size": len(d.content or b""),
                      "readable": _may_read_document(d.kind, identity.role)} for d in case.documents]
        late = deadlines.is_overdue(case, registry.deadlines)
        due = deadlines.deadline_at(case, registry.deadlines)
        clearances = None
        if case.service == "REPATRIATION":
            given = (shown.get("outcome") or {}).get("clearances", {})
            legs = {lg["partner"]: lg for lg in talk["legs"]}
            clearances = [{"authority": a, "decision": given.get(a), "leg": legs.get(a)}
                          for a in catalogue.module_for("REPATRIATION").AUTHORITIES]
        actions = case_page_actions(session, case, identity)
        printable = identity.may("registry:act") and (  # printing issues an official document: the posts'
            any(d.kind in PRINTABLE_KINDS for d in case.documents)
            or (case.service == "JUDICIAL_DOCUMENT" and case.status in CERTIFIED))
        audit.record(hub, session, identity, audit.CASE_VIEWED, case.reference, "console")
        return {"case": shown, "actions": actions, "printable": printable, "service_label": service_label(case.service), "status_label": status_label(case.status),
                "history": history, "documents": documents, "conversation": talk, "overdue": late, "deadline_at": due,
                "deadline": registry.deadlines[case.service].text,
                "deadline_seconds": registry.deadlines[case.service].seconds, "clearances": clearances}


def case_page_actions(session, case: Case, identity: Identity) -> dict:
    """What the viewer may do to the case from its page (the same checks refuse it again when done)."""
    if not identity.may(ACT):  # (the page itself shows an agent only their post's cases)
        return {}
    mine = identity.post_scope is None or identity.post_scope == case.post_code
    posts = []
    if mine and case.status in open_statuses(case.service):
        posts = list(session.scalars(select(Post.code).where(Post.active.is_(True), Post.code != case.post_code)
                                     .order_by(Post.code)))
    return {"cancel": mine and cancellable(case.service, case.status),
            "retry": mine and case.status == FAILED and retryable(case.service),
            "reassign": posts,
            "match": (case.service, case.status) == case_actions.MATCHABLE}


def read_document(registry, reference: str, document_id: int, identity: Identity) -> dict:
    """A document of the case, if the role may read its kind; each read is audited (DOCUMENT_VIEWED)."""
    hub = registry.hub
    with hub.sessions.begin() as session:
        case = find_case(session, reference, identity)
        document = session.get(CaseDocument, document_id)
        if document is None or document.case_id != case.id:
            raise NotFound(f"case {reference} has no document {document_id}")
        if not _may_read_document(document.kind, identity.role):
            raise Forbidden(f"reading the {document.kind} of case {reference}: the {identity.role} role may not "
                            "(judicial documents and health data: registry/outputs.py)")
        audit.record(hub, session, identity, audit.DOCUMENT_VIEWED, case.reference,
                     f"{document.kind} from {document.source_message_id} ({len(document.content)} bytes)")
        return {"reference": case.reference, "kind": document.kind, "source_message_id": document.source_message_id,
                "received_at": document.received_at, "xml": pretty(document.content)}


def pretty(content: bytes) -> str:
    """The XML indented for reading (as stored when it cannot be parsed)."""
    try:
        tree = parse_trusted(content)
        etree.indent(tree, space="  ")
        return etree.tostring(tree, encoding="unicode")
    except Exception:  # noqa: BLE001 - shown as kept
        return content.decode("utf-8", "replace")


# -- pages ---------------------------------------------------------------------------------------------

router = APIRouter(prefix="/monitor", include_in_schema=False)


def _registry(request: Request):
    return request.app.state.registry


@router.get("/cases")
def case_list(request: Request, service_name: str | None = Query(None, alias="service", pattern=cases.SERVICE),
              status: str | None = Query(None, pattern=cases.STATUS),
              post: str | None = Query(None, pattern=cases.POST),
              citizen: str | None = Query(None, pattern=cases.REGISTRATION_ID),
              opened_from: dt.date | None = Query(None), opened_to: dt.date | None = Query(None),
              overdue: bool = Query(False), cursor: str | None = Query(None, pattern=cases.CURSOR),
              seen: Viewer = Depends(viewer(READ))):
    registry = _registry(request)
    identity = seen.identity
    after = cases.read_cursor(cursor, "overdue") if cursor else None

    def work():
        with registry.hub.reads() as session:
            found = cases.search(session, registry.deadlines, identity, service=service_name, status=status,
                                 post_code=post, registration_id=citizen, opened_from=opened_from,
                                 opened_to=opened_to, tz=seen.tz, overdue=overdue, sort="overdue", after=after,
                                 limit=PAGE + 1)
            posts = ([identity.post_scope] if identity.post_scope else
                     list(session.scalars(select(Post.code).order_by(Post.code))))
            rows = [{"reference": f.case.reference, "service": f.case.service,
                     "service_label": service_label(f.case.service), "status": f.case.status,
                     "status_label": status_label(f.case.status), "post_code": f.case.post_code,
                     "opened": f.case.created_at, "updated": f.case.updated_at, "deadline_at": f.deadline_at,
                     "overdue": f.overdue} for f in found[:PAGE]]
            following = cases.cursor_after(found[PAGE - 1], "overdue") if len(found) > PAGE else None
        return rows, following, posts

    rows, following, posts = work()
    filters = {"service": service_name or "", "status": (status or "").upper(), "post": post or "",
               "citizen": citizen or "", "opened_from": opened_from.isoformat() if opened_from else "",
               "opened_to": opened_to.isoformat() if opened_to else "", "overdue": "1" if overdue else ""}
    page_url = lambda at: url("/monitor/cases", cursor=at, **filters)  # noqa: E731
    statuses = sorted({s for m in catalogue.modules() for s in m.MACHINE} | {FAILED, CANCELLED})
    return render(request, seen, "cases/list.html", rows=rows, filters=filters, posts=posts,
                  services=[(m.SERVICE, service_label(m.SERVICE)) for m in catalogue.modules()],
                  statuses=[(s, status_label(s)) for s in statuses],
                  tiles=service_tiles(registry, identity),
                  next_url=page_url(following) if following else None,
                  first_url=page_url(None) if cursor else None)


@router.get("/cases/deadlines")
def deadlines_page(request: Request, days: int = Query(30, ge=1, le=366), seen: Viewer = Depends(viewer(READ))):
    rows = answer_times(_registry(request), seen.identity, days=days)
    return render(request, seen, "cases/deadlines.html", rows=rows, days=days,
                  duration=lambda seconds: duration(seconds, seen.lang))


@router.get("/cases/{reference}")
def case_page(request: Request, reference: str = PathParam(max_length=40),
              done: str | None = Query(None, max_length=20), seen: Viewer = Depends(viewer(READ))):
    data = case_page_data(_registry(request), reference, seen.identity)
    return render(request, seen, "cases/case.html", withheld=WITHHELD, done=DONE.get(done or ""),
                  duration=lambda seconds: duration(seconds, seen.lang), **data)


def _form_text(name: str, value: str) -> str:
    """A form's text as the API's `Text` takes it: refused (400 naming the field) with a character XML cannot
    hold or a direction control."""
    character = unfit_character(value)
    if character:
        raise UnfitCharacter(f"field {name}", character)
    return value.strip()


async def _act_from_page(request: Request, reference: str, seen: Viewer, do, done: str) -> RedirectResponse:
    """The action `do(hub, session, case)` in one transaction (then what it returns, after the commit); back to
    the case page, which says what was done."""
    registry = _registry(request)

    def work():
        with registry.hub.sessions.begin() as session:
            case = find_case_for_action(session, reference)
            then = do(registry.hub, session, case)
        if then is not None:
            then(registry, reference)
    await run_in_threadpool(work)
    return RedirectResponse(url(f"/monitor/cases/{reference}", done=done), status_code=303)


def find_case_for_action(session, reference: str) -> Case:
    if not _REFERENCE.match(reference or ""):
        raise NotFound(f"no case with reference {reference[:60]!r}")
    return service.get_case(session, reference=reference, for_update=True)


@router.post("/cases/{reference}/cancel")
async def cancel_action(request: Request, reference: str = PathParam(max_length=40),
                        reason: str = Form(..., min_length=3, max_length=200),
                        seen: Viewer = Depends(csrf_checked(ACT))):
    reason = _form_text("reason", reason)
    return await _act_from_page(request, reference, seen, lambda hub, session, case: case_actions.cancel(
        hub, session, case, reason=reason, identity=seen.identity), "cancelled")


@router.post("/cases/{reference}/retry")
async def retry_action(request: Request, reference: str = PathParam(max_length=40),
                       seen: Viewer = Depends(csrf_checked(ACT))):
    def do(hub, session, case):
        case_actions.retry(hub, session, case, identity=seen.identity)
        return lambda registry, ref: registry.submit_case(ref)
    return await _act_from_page(request, reference, seen, do, "retried")


@router.post("/cases/{reference}/reassign")
async def reassign_action(request: Request, reference: str = PathParam(max_length=40),
                          post_code: str = Form(..., pattern=cases.POST),
                          reason: str = Form(..., min_length=3, max_length=200),
                          seen: Viewer = Depends(csrf_checked(ACT))):
    reason = _form_text("reason", reason)
    return await _act_from_page(request, reference, seen, lambda hub, session, case: case_actions.reassign(
        hub, session, case, post_code=post_code, reason=reason, identity=seen.identity), "reassigned")


@router.post("/cases/{reference}/match")
async def match_action(request: Request, reference: str = PathParam(max_length=40),
                       registration_id: str = Form(..., pattern=cases.REGISTRATION_ID),
                       note: str = Form("", max_length=200), seen: Viewer = Depends(csrf_checked(ACT))):
    note = _form_text("note", note)
    return await _act_from_page(request, reference, seen, lambda hub, session, case: case_actions.match_addressee(
        hub, session, case, registration_id=registration_id, note=note, identity=seen.identity), "matched")


@router.get("/cases/{reference}/documents/{document_id}")
def document_page(request: Request, reference: str = PathParam(max_length=40),
                  document_id: int = PathParam(ge=1, le=2**62), seen: Viewer = Depends(viewer(READ))):
    document = read_document(_registry(request), reference, document_id, seen.identity)
    return render(request, seen, "cases/document.html", document=document)


def answer_times(registry, identity: Identity, *, days: int = 30) -> list[dict]:
    with registry.hub.reads() as session:
        rows = deadlines.answer_times(session, registry.deadlines, days=days, post_code=identity.post_scope)
    return [{**row, "service_label": service_label(row["service"])} for row in rows]


# -- JSON for other tools (API tokens) -----------------------------------------------------------------

api = APIRouter(prefix="/api/v1", tags=["registry"])


@api.get("/monitor/deadlines", summary="Each service's answer deadline and its partners' answer times (p50, p95) "
                                       "over the cases opened in the last `days`")
def deadlines_json(request: Request, days: int = Query(30, ge=1, le=366),
                   identity: Identity = Depends(allowed(READ))):
    """As the console's deadlines page: per service and partner, the deadline, how many answered, the p50 and
    p95 answer times in seconds, how many within the deadline, how many still wait and how many are overdue (a
    consular agent: their post's cases)."""
    return answer_times(_registry(request), identity, days=days)


@api.get("/cases/{reference}/conversation", summary="A case's messages across partners as one timeline, and "
                                                    "each partner's leg")
async def conversation_json(reference: str, request: Request, identity: Identity = Depends(allowed(READ))):
    """As the console's case page: the entries of the case's messages in time order and, per partner, what was
    sent to it (delivery state and attempts) and what it answered. The messages' event details only for the
    roles that read messages."""
    registry = _registry(request)

    def work():
        with registry.hub.sessions.begin() as session:
            case = find_case(session, reference, identity)
            talk = conversation(registry, session, case, identity)
            audit.record(registry.hub, session, identity, audit.CASE_VIEWED, case.reference, "conversation")
            return talk

    return _jsonable(await run_in_threadpool(work))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value

"""The hub's records for people: refusals (/monitor/refusals: who was refused, at which door, why, the size and
SHA-256 of what arrived, never its bytes, which are not kept) and the audit log (/monitor/audit: who did what to
what, with the digest of the bytes concerned and whether the entry is sealed in its hash chain yet). Both are
searched by the filters of their page and paged newest first with a cursor (`before`: the id of the last row
of the page, so a page costs the same however deep); the same searches are JSON under /api/v1/monitor/refusals
and /api/v1/monitor/audit for other tools.

Dates filter whole days: on the pages in the viewer's time zone, in the API in UTC."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select, text

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.errors import InputError, UnfitCharacter
from hub.intake.door import DOORS
from hub.monitor.web import Viewer, render, viewer
from hub.store.models import AuditEntry, Refusal
from hub.xml.text import unfit_character

router = APIRouter(prefix="/monitor", include_in_schema=False)
api = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])

PAGE = 50
MAX_ID = 2**63 - 1
UTC = dt.timezone.utc
FIRST_YEAR, LAST_YEAR = 2000, 2100

def day(name: str, value: str | None) -> dt.date | None:
    """A date filter (YYYY-MM-DD), or None; InputError (400) naming the filter otherwise."""
    if not value:
        return None
    try:
        parsed = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{name}: {value[:20]!r} is not a date: write it YYYY-MM-DD") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise InputError(f"{name}: {parsed.isoformat()} is outside {FIRST_YEAR}-{LAST_YEAR}")
    return parsed


def day_range(since: str | None, until: str | None, tz: dt.tzinfo) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start of `since`, end of `until`) in `tz`, as UTC datetimes; both days included."""
    first, last = day("since", since), day("until", until)
    if first and last and last < first:
        raise InputError("until: the last day is before the first (since)")
    start = dt.datetime.combine(first, dt.time.min, tzinfo=tz).astimezone(UTC) if first else None
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=tz).astimezone(UTC) if last else None
    return start, end


def text_filter(name: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    character = unfit_character(value, parameter=True)
    if character:
        raise UnfitCharacter(f"query parameter {name}", character)
    return value.strip()


@dataclass
class Page:
    items: list
    next_before: int | None
    filters: dict

    def as_dict(self, row) -> dict:
        return {"items": [row(item) for item in self.items], "next_before": self.next_before}


def _page(session, query, id_column, before: int | None, limit: int) -> tuple[list, int | None]:
    if before:
        query = query.where(id_column < before)
    rows = session.scalars(query.order_by(id_column.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


# -- refusals ----------------------------------------------------------------------------------------------

def search_refusals(hub, *, door: str | None = None, partner: str | None = None, status: int | None = None,
                    start: dt.datetime | None = None, end: dt.datetime | None = None, before: int | None = None,
                    limit: int = PAGE) -> Page:
    door, partner = text_filter("door", door), text_filter("partner", partner)
    if door and door not in DOORS:
        raise InputError(f"door: {door[:20]!r} is not one of the hub's doors ({', '.join(DOORS)})")
    query = select(Refusal)
    if door:
        query = query.where(Refusal.channel == door)
    if partner:
        query = query.where(Refusal.partner == partner.upper()[:20])
    if status:
        query = query.where(Refusal.status == status)
    if start:
        query = query.where(Refusal.at >= start)
    if end:
        query = query.where(Refusal.at < end)
    with hub.sessions() as session:
        rows, next_before = _page(session, query, Refusal.id, before, limit)
        session.expunge_all()
    return Page(rows, next_before, {"door": door, "partner": partner and partner.upper(), "status": status})


def refusal_dict(r: Refusal) -> dict:
    return {"id": r.id, "at": r.at.isoformat(), "door": r.channel, "partner": r.partner, "status": r.status,
            "reason": r.reason, "size": r.size if r.size >= 0 else None, "digest_sha256": r.digest or None}


STATUS = Query(None, ge=100, le=599, description="the HTTP status answered")
BEFORE = Query(None, ge=1, le=MAX_ID, description="a page's `next_before`: the page after it")
DOOR = Query(None, max_length=20, description=f"one of {', '.join(DOORS)}")
PARTNER = Query(None, max_length=20, description="the door's party, or the sender the bytes claimed")
SINCE = Query(None, max_length=20, description="first day, YYYY-MM-DD")
UNTIL = Query(None, max_length=20, description="last day, YYYY-MM-DD")


@router.get("/refusals")
def refusals_page(request: Request, door: str | None = DOOR, partner: str | None = PARTNER,
                  status: int | None = STATUS, since: str | None = SINCE, until: str | None = UNTIL,
                  before: int | None = BEFORE, seen: Viewer = Depends(viewer("refusals:read"))):
    start, end = day_range(since, until, seen.tz)
    page = search_refusals(request.app.state.hub, door=door, partner=partner, status=status, start=start, end=end,
                           before=before)
    return render(request, seen, "refusals.html", page=page, doors=DOORS, since=since or "", until=until or "",
                  before=before)


@api.get("/refusals", summary="Inputs the hub refused (never their bytes), newest first")
def refusals_json(request: Request, door: str | None = DOOR, partner: str | None = PARTNER,
                  status: int | None = STATUS, since: str | None = SINCE, until: str | None = UNTIL,
                  before: int | None = BEFORE, limit: int = Query(PAGE, ge=1, le=500),
                  _identity: Identity = Depends(allowed("refusals:read"))):
    """Days are UTC. `next_before` is the cursor of the next page (null on the last)."""
    start, end = day_range(since, until, UTC)
    page = search_refusals(request.app.state.hub, door=door, partner=partner, status=status, start=start, end=end,
                           before=before, limit=limit)
    return page.as_dict(refusal_dict)


# -- the audit log ------------------------------------------------------------------------------------------

def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_audit(hub, *, action: str | None = None, actor: str | None = None, subject: str | None = None,
                 start: dt.datetime | None = None, end: dt.datetime | None = None, before: int | None = None,
                 limit: int = PAGE) -> Page:
    action, actor, subject = (text_filter("action", action), text_filter("actor", actor),
                              text_filter("subject", subject))
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action.upper())
    if actor:
        query = query.where(AuditEntry.actor.ilike(_like(actor), escape="\\"))
    if subject:
        query = query.where(AuditEntry.subject == subject)
    if start:
        query = query.where(AuditEntry.at >= start)
    if end:
        query = query.where(AuditEntry.at < end)
    with hub.sessions() as session:
        rows, next_before = _page(session, query, AuditEntry.id, before, limit)
        session.expunge_all()
    return Page(rows, next_before, {"action": action and action.upper(), "actor": actor, "subject": subject})


def audit_dict(e: AuditEntry) -> dict:
    return {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject,
            "detail": e.detail, "digest_sha256": e.digest, "sealed": e.chain_seq is not None,
            "chain_seq": e.chain_seq}


# The actions the log holds, one index probe each (a loose index scan: a DISTINCT would read every entry).
_ACTIONS = text("WITH RECURSIVE seen(action) AS ("
                " SELECT min(action) FROM audit_log"
                " UNION ALL SELECT (SELECT min(action) FROM audit_log WHERE action > seen.action) FROM seen"
                " WHERE seen.action IS NOT NULL)"
                " SELECT action FROM seen WHERE action IS NOT NULL LIMIT 200")


def audit_actions(hub) -> list[str]:
    with hub.sessions() as session:
        return list(session.scalars(_ACTIONS))


ACTION = Query(None, max_length=40, description="RESEND, PAYLOAD_VIEWED, LOGIN, ...")
ACTOR = Query(None, max_length=120, description="text the actor holds (a username, a token id)")
SUBJECT = Query(None, max_length=200, description="the subject exactly (a message id, a username)")


@router.get("/audit")
def audit_page(request: Request, action: str | None = ACTION, actor: str | None = ACTOR,
               subject: str | None = SUBJECT, since: str | None = SINCE, until: str | None = UNTIL,
               before: int | None = BEFORE, seen: Viewer = Depends(viewer("audit:read"))):
    hub = request.app.state.hub
    start, end = day_range(since, until, seen.tz)
    page = search_audit(hub, action=action, actor=actor, subject=subject, start=start, end=end, before=before)
    return render(request, seen, "audit.html", page=page, actions=audit_actions(hub), since=since or "",
                  until=until or "", before=before)


@api.get("/audit", summary="The audit log of human actions, newest first")
def audit_json(request: Request, action: str | None = ACTION, actor: str | None = ACTOR,
               subject: str | None = SUBJECT, since: str | None = SINCE, until: str | None = UNTIL,
               before: int | None = BEFORE, limit: int = Query(PAGE, ge=1, le=500),
               _identity: Identity = Depends(allowed("audit:read"))):
    """Days are UTC; `sealed` says whether the entry is in its hash chain yet (within a second or so)."""
    start, end = day_range(since, until, UTC)
    page = search_audit(request.app.state.hub, action=action, actor=actor, subject=subject, start=start, end=end,
                        before=before, limit=limit)
    return page.as_dict(audit_dict)

"""Finding cases: the search behind GET /api/v1/cases and the console's case list (registry/console.py), one
function for both; and the correlation ids under which a case's messages travel.

A consular agent finds only the cases of their post (asking for another post's is Forbidden). Cases past their
deadline (registry/deadlines.py) come first when sorted by `overdue`, then the newest."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import case as when_then, select
from sqlalchemy.orm import Session, selectinload

from hub.access.tokens import Identity
from hub.errors import Forbidden
from registry.deadlines import Deadlines, deadline_at, is_overdue, overdue_condition
from registry.models import Case, PensionBatch

SERVICE = r"^[A-Za-z_]{1,40}$"
STATUS = r"^[A-Za-z_]{1,24}$"
POST = r"^[A-Za-z]{2}-[A-Za-z0-9]{2,8}$"
REFERENCE = r"^[A-Z]{2,4}-[0-9]{4}-[0-9]{6,12}$"
SORTS = ("newest", "overdue")
MAX_OFFSET = 100_000
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Found:
    """One case of a search, with its deadline."""

    case: Case
    deadline_at: dt.datetime | None
    overdue: bool


def opened_bounds(opened_from: dt.date | None, opened_to: dt.date | None,
                  tz: ZoneInfo | dt.tzinfo = UTC) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The UTC instants of the start of `opened_from` and the end of `opened_to`, as days in `tz`."""
    try:
        start = dt.datetime.combine(opened_from, dt.time.min, tz).astimezone(UTC) if opened_from else None
    except OverflowError:   # the first day of the calendar, east of UTC: from the beginning
        start = None
    try:
        end = (dt.datetime.combine(opened_to + dt.timedelta(days=1), dt.time.min, tz).astimezone(UTC)
               if opened_to else None)
    except OverflowError:   # the calendar's last day: to the end
        end = None
    return start, end


def search(session: Session, deadlines: Deadlines, identity: Identity, *, service: str | None = None,
           status: str | None = None, post_code: str | None = None, opened_from: dt.date | None = None,
           opened_to: dt.date | None = None, tz: dt.tzinfo = UTC, overdue: bool = False, sort: str = "newest",
           offset: int = 0, limit: int = 50) -> list[Found]:
    """Cases matching the filters (service, status, post, opened between two days in `tz`, only those past their
    deadline), sorted newest first or overdue first; `limit` from `offset`."""
    if identity.post_scope is not None:
        if post_code not in (None, "", identity.post_scope):
            raise Forbidden(f"listing the cases of {post_code}: a consular agent of {identity.post_scope} sees "
                            f"only the cases of {identity.post_scope}")
        post_code = identity.post_scope
    now = dt.datetime.now(UTC)
    late = overdue_condition(deadlines, now)
    query = select(Case).options(selectinload(Case.citizen))
    if service:
        query = query.where(Case.service == service.upper())
    if status:
        query = query.where(Case.status == status.upper())
    if post_code:
        query = query.where(Case.post_code == post_code.upper())
    start, end = opened_bounds(opened_from, opened_to, tz)
    if start is not None:
        query = query.where(Case.created_at >= start)
    if end is not None:
        query = query.where(Case.created_at < end)
    if overdue:
        query = query.where(late)
    order = [Case.id.desc()]
    if sort == "overdue" and not overdue:
        order.insert(0, when_then((late, 0), else_=1))
    query = query.order_by(*order).offset(min(max(offset, 0), MAX_OFFSET)).limit(limit)
    return [Found(c, deadline_at(c, deadlines), is_overdue(c, deadlines, now)) for c in session.scalars(query)]


def correlation_ids(session: Session, case: Case) -> list[str]:
    """The CorrelationIds of the case's messages: its reference; for a judicial document also JUSTICE's
    reference (JUSTICE's request and the certificate carry it); for a life certificate its batch's reference."""
    ids = [case.reference]
    if case.service == "JUDICIAL_DOCUMENT" and case.partner_reference:
        ids.append(case.partner_reference)
    if case.service == "LIFE_CERTIFICATE" and case.request_message_id:
        batch = session.scalars(select(PensionBatch.reference)
                                .where(PensionBatch.message_id == case.request_message_id)).first()
        if batch:
            ids.append(batch)
    return ids

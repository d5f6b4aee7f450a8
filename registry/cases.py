"""Finding cases: the search behind GET /api/v1/cases and the console's case list (registry/console.py), one
function for both; and the correlation ids under which a case's messages travel.

A consular agent finds only the cases of their post (asking for another post's is Forbidden). Cases past their
deadline (registry/deadlines.py) come first when sorted by `overdue`, then the newest.

Pages follow a cursor: the opaque cursor of the next page (`cursor_after`; the API's X-Next-Cursor) names the last case shown (its place in the sort),
and the next page starts after it, however many cases were opened in between; reading page 10,000 costs what
page 1 does. A cursor made by hand (not base64 of what this module writes, or for another sort) is a 400.
`offset` still works for one release (it reads and skips every case before the page) and goes after that."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import case as when_then, select
from sqlalchemy.orm import Session, selectinload

from hub.access.tokens import Identity
from hub.errors import BadCursor, Forbidden
from registry.deadlines import Deadlines, deadline_at, is_overdue, overdue_condition
from registry.models import Case, Citizen, PensionBatch

SERVICE = r"^[A-Za-z_]{1,40}$"
STATUS = r"^[A-Za-z_]{1,24}$"
POST = r"^[A-Za-z]{2}-[A-Za-z0-9]{2,8}$"
REFERENCE = r"^[A-Z]{2,4}-[0-9]{4}-[0-9]{6,12}$"
REGISTRATION_ID = r"^MRE-[0-9]{7,10}$"
CURSOR = r"^[A-Za-z0-9_-]{1,64}={0,2}$"
_CURSOR_TEXT = re.compile(r"^(newest|overdue)\.([01])\.([1-9][0-9]{0,17})$")
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


@dataclass(frozen=True)
class Position:
    """Where a page ends in a sort: the case's rank (0: past its deadline, first when sorted by `overdue`; else 1)
    and its id (newest first within a rank)."""

    sort: str
    rank: int
    case_id: int


def cursor_after(found: Found, sort: str) -> str:
    """The opaque cursor of the page that follows `found` in `sort`."""
    rank = 0 if sort == "overdue" and found.overdue else 1
    return base64.urlsafe_b64encode(f"{sort}.{rank}.{found.case.id}".encode()).decode().rstrip("=")


def read_cursor(cursor: str, sort: str) -> Position:
    """The position a cursor names; BadCursor (400, naming the field) for anything this module did not write."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor: not a cursor this list gave (use X-Next-Cursor as it came)") from None
    found = _CURSOR_TEXT.match(text)
    if found is None:
        raise BadCursor("cursor: not a cursor this list gave (use X-Next-Cursor as it came)")
    if found.group(1) != sort:
        raise BadCursor(f"cursor: it pages the {found.group(1)} sort, not {sort}: keep the sort of its first page")
    return Position(sort, int(found.group(2)), int(found.group(3)))


def search(session: Session, deadlines: Deadlines, identity: Identity, *, service: str | None = None,
           status: str | None = None, post_code: str | None = None, opened_from: dt.date | None = None,
           opened_to: dt.date | None = None, tz: dt.tzinfo = UTC, overdue: bool = False, sort: str = "newest",
           registration_id: str | None = None, after: Position | None = None,
           offset: int = 0, limit: int = 50) -> list[Found]:
    """Cases matching the filters (service, status, post, the citizen's registration id, opened between two days
    in `tz`, only those past their deadline), sorted newest first or overdue first; `limit` of them after the
    position `after` (a cursor's), or from `offset`."""
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
    if registration_id:
        query = query.where(Case.citizen_id == select(Citizen.id).where(
            Citizen.registration_id == registration_id.upper()).scalar_subquery())
    start, end = opened_bounds(opened_from, opened_to, tz)
    if start is not None:
        query = query.where(Case.created_at >= start)
    if end is not None:
        query = query.where(Case.created_at < end)
    if overdue:
        query = query.where(late)
    order = [Case.id.desc()]
    ranked = sort == "overdue" and not overdue
    rank = when_then((late, 0), else_=1)
    if ranked:
        order.insert(0, rank)
    if after is not None:
        if ranked:
            query = query.where((rank > after.rank) | ((rank == after.rank) & (Case.id < after.case_id)))
        else:
            query = query.where(Case.id < after.case_id)
    elif offset:
        query = query.offset(min(max(offset, 0), MAX_OFFSET))
    query = query.order_by(*order).limit(limit)
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

"""Stored messages looked up: the search (every filter answered from an index, fast at any history's size),
one message by its id, and a payload viewed by a person or a tool (audited). The API (hub/api/messages.py), the
console (hub/monitor/messages.py) and the command line read through here."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select, union
from sqlalchemy.orm import defer, selectinload

from hub.errors import NotFound
from hub.evidence import audit
from hub.store.models import Message

COUNT_LIMIT = 10_000  # a search's total is counted exactly up to this many matches, unless exact_total=true
MAX_OFFSET = 1_000_000  # deeper pages are reached with `before` (a large offset reads every row it skips)
MAX_ID = 2**63 - 1      # a row id (BIGINT): a larger `before` is refused, not sent to the database
# How far apart a message's id order and its received_at order may be: received_at is taken before the receipt
# is signed and the row committed (with others, hub/store/group_commit.py), so a later id can carry a slightly
# earlier time. A date range is searched as the id range found by a probe, widened by this, then filtered exactly.
RECEIVED_SKEW = dt.timedelta(seconds=60)


def find_message(session, message_id: str, sender: str | None = None) -> Message:
    query = (select(Message).where(Message.message_id == message_id)
             .options(selectinload(Message.deliveries), selectinload(Message.events)))
    if sender:
        query = query.where(Message.sender == sender)
    found = session.scalars(query).all()
    if not found:
        raise NotFound(f"no message with id {message_id!r}" + (f" from {sender}" if sender else ""))
    return found[0]


@dataclass(frozen=True)
class Filters:
    """What a message search asks for (every filter given must hold). Dates are aware datetimes (a naive one is
    taken as UTC); `received_to` is excluded."""

    state: str | None = None
    type: str | None = None
    partner: str | None = None          # sender or recipient
    sender: str | None = None
    correlation_id: str | None = None   # the case
    message_id: str | None = None
    received_from: dt.datetime | None = None
    received_to: dt.datetime | None = None


@dataclass(frozen=True)
class Found:
    total: int                # exact when total_exact, else "at least"
    total_exact: bool
    items: list               # Message rows (payload columns deferred), newest first
    next_before: int | None   # the cursor of the next (older) page, None on the last
    previous_after: int | None = None  # the cursor of the page before (newer), None on the first


def search_messages(session, filters: Filters, *, limit: int = 50, offset: int = 0, before: int | None = None,
                    after: int | None = None, count_limit: int | None = COUNT_LIMIT, count: bool = True,
                    ids: tuple[int | None, int | None] | None = None) -> Found:
    """One page of a message search, newest first, and its total (`count=False`: not counted, total -1). What
    the API's GET /api/v1/messages and the console's search and CSV export all answer with. `before`: the page
    older than that id; `after`: the page newer than it (the one before a page, read upwards from it). `ids`:
    the date range's id range when already found (`received_id_range`), for a caller reading many pages."""
    if ids is None:
        ids = received_id_range(session, filters.received_from, filters.received_to)
    counts, page = search_statements(**{f: getattr(filters, f) for f in Filters.__dataclass_fields__},
                                     id_range=ids, limit=limit + (after is not None), offset=offset,
                                     before=before, after=after, count_limit=count_limit)
    total = sum(session.scalar(c) for c in counts) if count else -1
    rows = list(session.scalars(page).all())
    exact = count_limit is None or total <= count_limit
    if after is not None:  # read upwards from `after` (one more: are there newer ones?), shown newest first;
        newer = len(rows) > limit  # older ones exist: the page the reader came from
        rows = rows[:limit][::-1]
        return Found(total if exact else count_limit, exact, rows, rows[-1].id if rows else after + 1,
                     rows[0].id if newer else None)
    return Found(total if exact else count_limit, exact, rows, rows[-1].id if len(rows) == limit else None,
                 rows[0].id if rows and (before is not None or offset) else None)


def received_id_range(session, received_from: dt.datetime | None,
                      received_to: dt.datetime | None) -> tuple[int | None, int | None]:
    """(lowest id, id past the last) that can hold messages received in [received_from, received_to): ids and
    received_at grow together (up to RECEIVED_SKEW), so each bound is found by a binary search on the primary
    key, a few dozen single-row reads at any table size, where a filter on received_at alone (no index) would
    read the whole table. None: no bound on that side."""
    if received_from is None and received_to is None:
        return None, None
    first, last = session.execute(select(func.min(Message.id), func.max(Message.id))).one()
    if first is None:
        return None, None

    def first_id_at_or_after(moment: dt.datetime) -> int | None:
        """The smallest id from which rows were received at or after `moment`; None: no row was."""
        def probe(at_least: int):
            return session.execute(select(Message.id, Message.received_at).where(Message.id >= at_least)
                                   .order_by(Message.id).limit(1)).first()
        if probe(last).received_at < moment:
            return None
        low, high = first, last  # the answer is in [low, high]: the row at `high` qualifies
        while low < high:
            row = probe((low + high) // 2)
            if row.received_at >= moment:
                high = min(high, row.id)
            else:
                low = row.id + 1
        return low

    low = high = None
    start, end = _shifted(received_from, -RECEIVED_SKEW), _shifted(received_to, RECEIVED_SKEW)
    if start is not None:
        low = first_id_at_or_after(start)
        if low is None:   # nothing received that late
            return last + 1, last + 1
    if end is not None:
        high = first_id_at_or_after(end)
    return low, high


def _shifted(moment: dt.datetime | None, skew: dt.timedelta) -> dt.datetime | None:
    """`moment` widened by the skew, in UTC; None (no bound on that side) for none, or for one at the very edge
    of the calendar (year 1 or 9999), which bounds nothing."""
    try:
        return _utc(moment) + skew if moment is not None and _utc(moment) else None
    except OverflowError:
        return None


def _utc(moment: dt.datetime) -> dt.datetime | None:
    """`moment` in UTC (a naive one taken as UTC already); None at the calendar's edge, where it does not fit."""
    try:
        return _aware(moment).astimezone(dt.timezone.utc)
    except OverflowError:
        return None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def search_statements(*, state: str | None = None, type: str | None = None, partner: str | None = None,
                      sender: str | None = None, correlation_id: str | None = None, message_id: str | None = None,
                      received_from: dt.datetime | None = None, received_to: dt.datetime | None = None,
                      id_range: tuple[int | None, int | None] = (None, None), limit: int = 50, offset: int = 0,
                      before: int | None = None, after: int | None = None, count_limit: int | None = None):
    """(count statements whose results add up to the total, the page's statement) of a message search.

    Each filter is answered from an index on (column, id) (hub/store/migrations/versions/0005_search_indexes.py),
    which gives the rows newest first, so a page costs the same at any table size. A partner is sender OR
    recipient: that is two index ranges, counted apart (sent by it, plus received by it from someone
    else) and merged for the page -- an OR would read the whole table in id order when the partner is rare.
    A date range needs `id_range`, the ids that can hold it (`received_id_range`): the rows are read in that
    id range and their received_at checked, never the table.
    With `count_limit`, each count stops after count_limit + 1 matches: a sum above count_limit means
    "more than count_limit", and one at or below it is exact."""
    filters = []
    if state:
        filters.append(Message.state == state.upper())
    if type:
        filters.append(Message.type == type)
    if sender:
        filters.append(Message.sender == sender.upper())
    if correlation_id:
        filters.append(Message.correlation_id == correlation_id)
    if message_id:
        filters.append(Message.message_id == message_id)
    low, high = id_range
    if low is not None:
        filters.append(Message.id >= low)
    if high is not None:
        filters.append(Message.id < high)
    if received_from and _utc(received_from):
        filters.append(Message.received_at >= _utc(received_from))
    if received_to and _utc(received_to):
        filters.append(Message.received_at < _utc(received_to))
    page = filters + ([Message.id < before] if before else []) + ([Message.id > after] if after else [])
    # newest first; a page after a cursor is read upwards from it (oldest first: the caller turns it round)
    order = Message.id.asc() if after else Message.id.desc()

    def count(*where):
        if count_limit is None:
            return select(func.count()).select_from(Message).where(*where)
        matches = select(Message.id).where(*where).limit(count_limit + 1).subquery()
        return select(func.count()).select_from(matches)

    if not partner:
        counts = [count(*filters)]
    else:
        partner = partner.upper()
        counts = [count(Message.sender == partner, *filters),
                  count(Message.recipient == partner, Message.sender != partner, *filters)]
        ranges = [select(Message.id).where(column == partner, *page).order_by(order)
                  .limit(limit + offset).subquery() for column in (Message.sender, Message.recipient)]
        ids = union(*(select(r.c.id) for r in ranges)).subquery()
        page = [Message.id.in_(select(ids.c.id))]
    return counts, (select(Message).options(*(defer(c) for c in (Message.received_bytes, Message.canonical_bytes,
                                                                 Message.receipt)))
                    .where(*page).order_by(order).limit(limit).offset(offset))


@dataclass(frozen=True)
class Payload:
    message_id: str
    sender: str
    what: str                        # "received", "canonical", "sent to NARSA"
    data: bytes | None               # None: purged by retention (then nothing was viewed, nor audited)
    purged_at: dt.datetime | None


def view_payload(hub, actor: str, message_id: str, *, sender: str | None = None, part: str = "received",
                 partner: str | None = None) -> Payload:
    """A message's bytes as received, as mapped in (canonical), as sent to `partner`, or that partner's answer
    (the console's "answer" tab; the API serves the first three), for `actor` to see:
    the view is written to the audit log (PAYLOAD_VIEWED, with the bytes' sha256) in the transaction that reads
    them. The API's payload route and the console's payload tabs both view through here. NotFound for an
    unknown message, part or delivery."""
    with hub.sessions.begin() as session:
        message = find_message(session, message_id, sender)
        what = part
        if part == "received":
            data = message.received_bytes
        elif part == "canonical":
            data = message.canonical_bytes
            if data is None and message.purged_at is None:
                raise NotFound(f"message {message_id} arrived in the canonical format: ask for part=received")
        elif part == "sent":
            deliveries = [d for d in message.deliveries if partner is None or d.partner == partner.upper()]
            if len(deliveries) != 1:
                choices = ", ".join(d.partner for d in message.deliveries) or "none"
                raise NotFound(f"message {message_id} has no single delivery" +
                               (f" to {partner.upper()}" if partner else "") + f" (deliveries: {choices}); "
                               "name one with partner=")
            delivery = deliveries[0]
            data, what = delivery.sent_bytes, f"sent to {delivery.partner}"
            if data is None and message.purged_at is None:
                raise NotFound(f"message {message_id} has not been sent to {delivery.partner} yet")
        elif part == "answer":  # the partner's answer to a delivery: its document, personal data as much
            deliveries = [d for d in message.deliveries if partner is None or d.partner == partner.upper()]
            if len(deliveries) != 1 or deliveries[0].partner_receipt is None:
                raise NotFound(f"message {message_id} has no single answer" +
                               (f" from {partner.upper()}" if partner else "") + "; name its partner with partner=")
            data, what = deliveries[0].partner_receipt, f"answer of {deliveries[0].partner}"
        else:
            raise NotFound(f"a message has no part {part[:40]!r} (received, canonical, sent or answer)")
        if data is not None:
            audit.record(session, actor=actor, action="PAYLOAD_VIEWED", subject=message.message_id,
                         detail=f"{what} ({len(data)} bytes, from {message.sender})",
                         digest=hashlib.sha256(data).hexdigest())
        return Payload(message.message_id, message.sender, what, data, message.purged_at)

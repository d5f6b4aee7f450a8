"""Message intake and lookup: POST /api/v1/messages, partner callbacks, GET /api/v1/messages/...,
a message's payload (audited), resend. Each route names the permission it needs (hub/access/tokens.py)."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import func, select, union
from sqlalchemy.orm import defer, selectinload

from hub.evidence import audit

from hub.api.auth import allowed
from hub.api.openapi import XML_RECEIPT, xml_body
from hub.api.problems import problem
from connectors.http import read_body
from hub.access.tokens import Identity
from hub.errors import DeliveryError, InputError, NotFound
from hub.store.models import Message
from hub.intake.door import Arrival, Receipt, refused
from hub.intake.polling import poll_partner, polling_partners

XML_TYPES = ("application/xml", "text/xml")

router = APIRouter(prefix="/api/v1", tags=["messages"])


async def read_document(request: Request, door: str, party: str | None) -> bytes:
    """The request body, refused early when it is not XML (415) or larger than the cap (413); such a
    refusal happens before intake, so it is recorded here, at the door (with the size announced)."""
    hub = request.app.state.hub
    try:
        return await read_body(request, max_bytes=hub.settings.max_message_bytes, media_types=XML_TYPES,
                               what="message")
    except InputError as exc:
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else None
        await run_in_threadpool(refused, hub, door, exc, party=party, size=size)
        raise


def _receipt_response(receipt: Receipt) -> Response:
    headers = {"X-Message-Id": receipt.message_id, "X-Duplicate": "true" if receipt.duplicate else "false"}
    return Response(receipt.body, status_code=202, media_type="application/xml", headers=headers)


INTAKE_RESPONSES = {202: XML_RECEIPT,
                    400: {"description": "Malformed, schema-invalid or badly signed; `errors` name line and path"},
                    403: {"description": "This sender may not send this message type, or the token may not submit"},
                    409: {"description": "Message id already used with other content"},
                    413: {"description": "Over HUB_MAX_MESSAGE_BYTES"}, 415: {"description": "Not application/xml"},
                    429: {"description": "A partner it goes to has too many deliveries waiting: nothing stored; "
                                         "send it again after Retry-After"}}


@router.post("/messages", status_code=202, summary="Submit a signed canonical message", response_class=Response,
             responses=INTAKE_RESPONSES,
             openapi_extra=xml_body("A canonical envelope (schemas/canonical/envelope.xsd) whose business document "
                                    "carries the sender's enveloped signature; `hub sample TYPE` prints one",
                                    example_file="LicenceAuthenticationRequest.xml"))
async def submit_message(request: Request, identity: Identity = Depends(allowed("messages:submit"))):
    data = await read_document(request, "rest", identity.partner)
    arrival = Arrival("rest", data=data, caller=identity.partner, submitted_by=identity.submitter)
    return _receipt_response(await run_in_threadpool(request.app.state.hub.receive, arrival))


@router.post("/partners/{partner}/messages", status_code=202, response_class=Response,
             summary="A partner's own-format document (answers and callbacks)", responses=INTAKE_RESPONSES,
             openapi_extra=xml_body("A document in the partner's own format (schemas/partners/<partner>/) with "
                                    "the partner's enveloped signature"))
async def submit_partner_document(partner: str, request: Request,
                                  identity: Identity = Depends(allowed("partner-documents:submit"))):
    code = partner.upper()
    identity.check_partner(code, doing=f"submitting a document as {code}")
    data = await read_document(request, "rest-partner", code)
    arrival = Arrival("rest-partner", data=data, partner=code, caller=identity.partner,
                      submitted_by=identity.submitter)
    return _receipt_response(await run_in_threadpool(request.app.state.hub.receive, arrival))


@router.post("/partners/{partner}/poll", summary="Fetch now what a polled partner (SFTP) left for the hub",
             responses={404: {"description": "No such partner, or it is not polled"},
                        503: {"description": "The partner could not be reached; try again later"}})
async def poll_now(partner: str, request: Request, _identity: Identity = Depends(allowed("operations:run"))):
    hub = request.app.state.hub
    code = partner.upper()
    if code not in polling_partners(hub):
        raise NotFound(f"{code} is not a partner the hub polls (polled: {', '.join(sorted(polling_partners(hub))) or 'none'})")
    try:
        counts = await run_in_threadpool(poll_partner, hub, code)
    except DeliveryError as exc:
        return problem(503, f"{code} could not be polled", f"polling {code}: {exc.reason}")
    return {"partner": code, **counts}


def message_summary(m: Message) -> dict:
    return {"id": m.message_id, "sender": m.sender, "recipient": m.recipient, "type": m.type,
            "correlation_id": m.correlation_id, "in_reply_to": m.in_reply_to, "state": m.state,
            "digest_sha256": m.digest, "received_at": m.received_at.isoformat(), "updated_at": m.updated_at.isoformat()}


def message_detail(m: Message) -> dict:
    return {**message_summary(m),
            "deliveries": [{"partner": d.partner, "state": d.state, "attempts": d.attempts,
                            "next_attempt_at": d.next_attempt_at.isoformat() if d.state == "PENDING" else None,
                            "last_error": d.last_error,
                            "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None}
                           for d in m.deliveries],
            "timeline": [{"at": e.at.isoformat(), "event": e.kind, "detail": e.detail} for e in m.events]}


def find_message(session, message_id: str, sender: str | None = None) -> Message:
    query = (select(Message).where(Message.message_id == message_id)
             .options(selectinload(Message.deliveries), selectinload(Message.events)))
    if sender:
        query = query.where(Message.sender == sender)
    found = session.scalars(query).all()
    if not found:
        raise NotFound(f"no message with id {message_id!r}" + (f" from {sender}" if sender else ""))
    return found[0]


@router.get("/messages/{message_id}", summary="A message's state, deliveries and timeline")
def get_message(message_id: str, request: Request, sender: str | None = None,
                _identity: Identity = Depends(allowed("messages:read"))):
    with request.app.state.hub.sessions() as session:
        return message_detail(find_message(session, message_id, sender))


COUNT_LIMIT = 10_000  # a search's total is counted exactly up to this many matches, unless exact_total=true
MAX_OFFSET = 1_000_000  # deeper pages are reached with `before` (a large offset reads every row it skips)
MAX_ID = 2**63 - 1      # a row id (BIGINT): a larger `before` is refused, not sent to the database
# How far apart a message's id order and its received_at order may be: received_at is taken before the receipt
# is signed and the row committed (with others, hub/store/group_commit.py), so a later id can carry a slightly
# earlier time. A date range is searched as the id range found by a probe, widened by this, then filtered exactly.
RECEIVED_SKEW = dt.timedelta(seconds=60)


@router.get("/messages", summary="Search messages")
def list_messages(request: Request, state: str | None = Query(None, max_length=40),
                  type: str | None = Query(None, max_length=100), partner: str | None = Query(None, max_length=20),
                  sender: str | None = Query(None, max_length=20, description="the party that sent it"),
                  correlation_id: str | None = Query(None, max_length=200),
                  message_id: str | None = Query(None, max_length=80, description="the message's own id"),
                  received_from: dt.datetime | None = Query(None, description="received at or after (ISO 8601; "
                                                                              "UTC when no offset is given)"),
                  received_to: dt.datetime | None = Query(None, description="received before (ISO 8601)"),
                  limit: int = Query(50, ge=1, le=500),
                  offset: int = Query(0, ge=0, le=MAX_OFFSET, description=f"at most {MAX_OFFSET:,}: page further "
                                                                          "with `before`"),
                  before: int | None = Query(None, ge=1, le=MAX_ID, description="a page's `next_before`: the page "
                                                                                "after it (faster than a large offset)"),
                  exact_total: bool = Query(False, description=f"count every match even beyond {COUNT_LIMIT:,} "
                                                               "(slower: it reads each one)"),
                  _identity: Identity = Depends(allowed("messages:read"))):
    """Newest first. `total` counts the matches (not only this page) exactly up to COUNT_LIMIT; beyond it
    `total_exact` is false and `total` says "at least" (as a search engine does), unless `exact_total=true`:
    an exact count reads every match, which is most of the cost of a search over a large history.
    `next_before` is the cursor of the next page (pass it as `before`), null on the last page."""
    with request.app.state.hub.sessions() as session:
        found = search_messages(session, Filters(state=state, type=type, partner=partner, sender=sender,
                                                 correlation_id=correlation_id, message_id=message_id,
                                                 received_from=received_from, received_to=received_to),
                                limit=limit, offset=offset, before=before,
                                count_limit=None if exact_total else COUNT_LIMIT)
        return {"total": found.total, "total_exact": found.total_exact,
                "items": [message_summary(m) for m in found.items], "next_before": found.next_before}


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
    next_before: int | None   # the cursor of the next page, None on the last


def search_messages(session, filters: Filters, *, limit: int = 50, offset: int = 0, before: int | None = None,
                    count_limit: int | None = COUNT_LIMIT, count: bool = True) -> Found:
    """One page of a message search, and its total (`count=False`: not counted, total -1). What the API's
    GET /api/v1/messages and the console's search and CSV export all answer with."""
    ids = received_id_range(session, filters.received_from, filters.received_to)
    counts, page = search_statements(**{f: getattr(filters, f) for f in Filters.__dataclass_fields__},
                                     id_range=ids, limit=limit, offset=offset, before=before,
                                     count_limit=count_limit)
    total = sum(session.scalar(c) for c in counts) if count else -1
    rows = session.scalars(page).all()
    exact = count_limit is None or total <= count_limit
    return Found(total if exact else count_limit, exact, list(rows),
                 rows[-1].id if len(rows) == limit else None)


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
    if received_from is not None:
        low = first_id_at_or_after(_aware(received_from) - RECEIVED_SKEW)
        if low is None:   # nothing received that late
            return last + 1, last + 1
    if received_to is not None:
        high = first_id_at_or_after(_aware(received_to) + RECEIVED_SKEW)
    return low, high


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def search_statements(*, state: str | None = None, type: str | None = None, partner: str | None = None,
                      sender: str | None = None, correlation_id: str | None = None, message_id: str | None = None,
                      received_from: dt.datetime | None = None, received_to: dt.datetime | None = None,
                      id_range: tuple[int | None, int | None] = (None, None), limit: int = 50, offset: int = 0,
                      before: int | None = None, count_limit: int | None = None):
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
    if received_from:
        filters.append(Message.received_at >= _aware(received_from))
    if received_to:
        filters.append(Message.received_at < _aware(received_to))
    page = filters + ([Message.id < before] if before else [])

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
        ranges = [select(Message.id).where(column == partner, *page).order_by(Message.id.desc())
                  .limit(limit + offset).subquery() for column in (Message.sender, Message.recipient)]
        ids = union(*(select(r.c.id) for r in ranges)).subquery()
        page = [Message.id.in_(select(ids.c.id))]
    return counts, (select(Message).options(*(defer(c) for c in (Message.received_bytes, Message.canonical_bytes,
                                                                 Message.receipt)))
                    .where(*page).order_by(Message.id.desc()).limit(limit).offset(offset))


PAYLOAD_PARTS = ("received", "canonical", "sent")


@router.get("/messages/{message_id}/payload", summary="A message's bytes as received, as mapped in, or as sent",
            response_class=Response,
            responses={200: {"content": {"application/xml": {}}, "description": "The XML as exchanged"},
                       404: {"description": "No such message, part or delivery"},
                       410: {"description": "Purged by the retention rule (hashes and receipts are kept)"}})
def get_payload(message_id: str, request: Request, sender: str | None = None,
                part: Literal["received", "canonical", "sent"] = Query(
                    "received", description="received: as it arrived; canonical: as mapped in from a partner's "
                                            "format; sent: as delivered to `partner`"),
                partner: str | None = Query(None, description="part=sent: the delivery's partner (needed when "
                                                              "the message went to several)"),
                identity: Identity = Depends(allowed("messages:payload"))):
    """The payload is personal data: each view is written to the audit log (PAYLOAD_VIEWED) in the same
    transaction that reads it."""
    viewed = view_payload(request.app.state.hub, identity.actor, message_id, sender=sender, part=part,
                          partner=partner)
    if viewed.data is None and viewed.purged_at is None:
        raise NotFound(f"the {viewed.what} payload of {message_id} is kept in a file of the hub's file store, "
                       "not viewable here (the evidence bundle of its case holds it)")
    if viewed.data is None:
        return problem(410, "Payload purged", f"the payload of {message_id} was purged on "
                                              f"{viewed.purged_at:%Y-%m-%d} by its retention rule; its hashes "
                                              "and receipts are kept")
    return Response(viewed.data, media_type="application/xml", headers={"X-Message-Id": viewed.message_id,
                                                                        "Cache-Control": "no-store"})


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


@router.post("/messages/{message_id}/resend", summary="Put a message's dead deliveries back in the outbox")
def resend_message(message_id: str, request: Request, identity: Identity = Depends(allowed("messages:resend"))):
    from hub.delivery.operations import resend
    count = resend(request.app.state.hub, message_id, actor=identity.actor)
    return {"message_id": message_id, "resent": count}

"""Message intake and lookup: POST /api/v1/messages, partner callbacks, GET /api/v1/messages/...,
a message's payload (audited), resend. Each route names the permission it needs (hub/access/tokens.py)."""
from __future__ import annotations

import hashlib
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


@router.get("/messages", summary="Search messages")
def list_messages(request: Request, state: str | None = Query(None, max_length=40),
                  type: str | None = Query(None, max_length=100), partner: str | None = Query(None, max_length=20),
                  correlation_id: str | None = Query(None, max_length=200), limit: int = Query(50, ge=1, le=500),
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
    counts, page = search_statements(state=state, type=type, partner=partner, correlation_id=correlation_id,
                                     limit=limit, offset=offset, before=before,
                                     count_limit=None if exact_total else COUNT_LIMIT)
    with request.app.state.hub.sessions() as session:
        total = sum(session.scalar(count) for count in counts)
        rows = session.scalars(page).all()
        exact = exact_total or total <= COUNT_LIMIT
        return {"total": total if exact else COUNT_LIMIT, "total_exact": exact,
                "items": [message_summary(m) for m in rows],
                "next_before": rows[-1].id if len(rows) == limit else None}


def search_statements(*, state: str | None = None, type: str | None = None, partner: str | None = None,
                      correlation_id: str | None = None, limit: int = 50, offset: int = 0, before: int | None = None,
                      count_limit: int | None = None):
    """(count statements whose results add up to the total, the page's statement) of a message search.

    Each filter is answered from an index on (column, id) (hub/store/migrations/versions/0005_search_indexes.py),
    which gives the rows newest first, so a page costs the same at any table size. A partner is sender OR
    recipient: that is two index ranges, counted apart (sent by it, plus received by it from someone
    else) and merged for the page -- an OR would read the whole table in id order when the partner is rare.
    With `count_limit`, each count stops after count_limit + 1 matches: a sum above count_limit means
    "more than count_limit", and one at or below it is exact."""
    filters = []
    if state:
        filters.append(Message.state == state.upper())
    if type:
        filters.append(Message.type == type)
    if correlation_id:
        filters.append(Message.correlation_id == correlation_id)
    page = filters + ([Message.id < before] if before else [])

    def count(*where):
        if count_limit is None:
            return select(func.count()).select_from(Message).where(*where)
        matches = select(Message.id).where(*where).limit(count_limit + 1).subquery()
        return select(func.count()).select_from(matches)

    if not partner:
        counts = [count(*filters)]
    else:
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
    with request.app.state.hub.sessions.begin() as session:
        message = find_message(session, message_id, sender)
        what = part
        if part == "received":
            data = message.received_bytes
        elif part == "canonical":
            data = message.canonical_bytes
            if data is None and message.purged_at is None:
                raise NotFound(f"message {message_id} arrived in the canonical format: ask for part=received")
        else:
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
        if data is None:
            return problem(410, "Payload purged", f"the payload of {message_id} was purged on "
                                                  f"{message.purged_at:%Y-%m-%d} by its retention rule; its hashes "
                                                  "and receipts are kept")
        audit.record(session, actor=identity.actor, action="PAYLOAD_VIEWED", subject=message.message_id,
                     detail=f"{what} ({len(data)} bytes, from {message.sender})",
                     digest=hashlib.sha256(data).hexdigest())
    return Response(data, media_type="application/xml", headers={"X-Message-Id": message.message_id,
                                                                 "Cache-Control": "no-store"})


@router.post("/messages/{message_id}/resend", summary="Put a message's dead deliveries back in the outbox")
def resend_message(message_id: str, request: Request, identity: Identity = Depends(allowed("messages:resend"))):
    from hub.delivery.operations import resend
    count = resend(request.app.state.hub, message_id, actor=identity.actor)
    return {"message_id": message_id, "resent": count}

"""Message intake and lookup: POST /api/v1/messages, partner callbacks, GET /api/v1/messages/...,
a message's payload (audited), resend. Each route names the permission it needs (hub/access/tokens.py)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from hub.access.dependencies import allowed
from hub.api.openapi import XML_RECEIPT, xml_body
from hub.api.problems import problem
from connectors.http import read_body
from hub.access.tokens import Identity
from hub.errors import DeliveryError, InputError, NotFound
from hub.messages import (COUNT_LIMIT, MAX_ID, MAX_OFFSET, Filters, find_message, search_messages,
                          search_statements, view_payload)  # noqa: F401 - search_statements: the API's search
from hub.store.models import Message
from hub.intake.door import Arrival, Receipt, receive_on_loop, refused
from hub.intake.polling import poll_partner, polling_partners

XML_TYPES = ("application/xml", "text/xml")
SUBMIT_PATH, SUBMIT_PERMISSION = "/api/v1/messages", "messages:submit"
PARTNER_SUBMIT_PERMISSION = "partner-documents:submit"

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
async def submit_message(request: Request, identity: Identity = Depends(allowed(SUBMIT_PERMISSION))):
    return await submit(request, identity)


async def submit(request: Request, identity: Identity) -> Response:
    """POST /api/v1/messages once the caller may submit: the route's work, served by `IntakeFront` too."""
    data = await read_document(request, "rest", identity.partner)
    arrival = Arrival("rest", data=data, caller=identity.partner, submitted_by=identity.submitter)
    return _receipt_response(await receive_on_loop(request.app.state.hub, arrival))


@router.post("/partners/{partner}/messages", status_code=202, response_class=Response,
             summary="A partner's own-format document (answers and callbacks)", responses=INTAKE_RESPONSES,
             openapi_extra=xml_body("A document in the partner's own format (schemas/partners/<partner>/) with "
                                    "the partner's enveloped signature"))
async def submit_partner_document(partner: str, request: Request,
                                  identity: Identity = Depends(allowed(PARTNER_SUBMIT_PERMISSION))):
    return await submit_as_partner(request, identity, partner)


async def submit_as_partner(request: Request, identity: Identity, partner: str) -> Response:
    """POST /api/v1/partners/{partner}/messages once the caller may submit partner documents: the route's work,
    served by `IntakeFront` too."""
    code = partner.upper()
    identity.check_partner(code, doing=f"submitting a document as {code}")
    data = await read_document(request, "rest-partner", code)
    arrival = Arrival("rest-partner", data=data, partner=code, caller=identity.partner,
                      submitted_by=identity.submitter)
    return _receipt_response(await receive_on_loop(request.app.state.hub, arrival))


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


@router.get("/messages/{message_id}", summary="A message's state, deliveries and timeline")
def get_message(message_id: str, request: Request, sender: str | None = None,
                _identity: Identity = Depends(allowed("messages:read"))):
    with request.app.state.hub.sessions() as session:
        return message_detail(find_message(session, message_id, sender))


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


@router.post("/messages/{message_id}/resend", summary="Put a message's dead deliveries back in the outbox")
def resend_message(message_id: str, request: Request, identity: Identity = Depends(allowed("messages:resend"))):
    from hub.delivery.operations import resend
    count = resend(request.app.state.hub, message_id, actor=identity.actor)
    return {"message_id": message_id, "resent": count}

"""A partner system reads its own traffic: GET /api/v1/partner/messages, /partner/messages/{id} and
/partner/refusals (permission partner-messages:read; what it sees: hub/partner_view.py).

A partner token reads its own party's traffic only (`partner`, when given, must be its own: 403 otherwise); an
administrator names the party (`partner=NARSA`) and sees exactly what that partner sees. Another party's
message answers 404 like an unknown one."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from hub.access.dependencies import allowed
from hub.access.tokens import PARTNER, Identity
from hub.errors import InputError, Problem
from hub.messages import MAX_ID
from hub.partner_view import TrafficFilters, find_own_message, list_refusals, list_traffic

router = APIRouter(prefix="/api/v1/partner", tags=["partner"])
PARTY = r"^[A-Z][A-Z_]{1,19}$"
PARTY_QUERY = Query(None, pattern=PARTY, description="The party whose traffic to read: a partner token's own (the "
                                                     "default); required of an administrator")


def party_of(identity: Identity, partner: str | None) -> str:
    """The party whose traffic `identity` reads."""
    if identity.role == PARTNER:
        identity.check_partner(partner or identity.partner, doing="reading a partner's traffic")
        return identity.partner
    if not partner:
        raise InputError("name the party whose traffic to read: partner=CODE",
                         [Problem("required of an administrator", path="query.partner")])
    return partner


@router.get("/messages", summary="A partner's own messages: sent to the hub or sent to it, newest first")
def own_messages(request: Request, partner: str | None = PARTY_QUERY,
                 direction: Literal["sent", "received"] | None = Query(None, description="sent: by the partner; "
                                                                                         "received: to it"),
                 type: str | None = Query(None, max_length=80),
                 correlation_id: str | None = Query(None, max_length=80, description="the case"),
                 state: Literal["ACCEPTED", "DELIVERED", "DEAD", "PENDING"] | None = Query(
                     None, description="its message's state (sent) or its delivery's (received)"),
                 before: int | None = Query(None, ge=1, le=MAX_ID, description="a page's `next_before`"),
                 limit: int = Query(50, ge=1, le=200),
                 identity: Identity = Depends(allowed("partner-messages:read"))):
    party = party_of(identity, partner)
    with request.app.state.hub.sessions() as session:
        items, next_before = list_traffic(session, party, TrafficFilters(direction, type, correlation_id, state),
                                          before=before, limit=limit)
    return {"partner": party, "items": items, "next_before": next_before}


@router.get("/messages/{message_id}", summary="One of a partner's own messages, with its deliveries and timeline")
def own_message(message_id: str, request: Request, partner: str | None = PARTY_QUERY,
                sender: str | None = Query(None, pattern=PARTY, description="when the id is used by two senders"),
                identity: Identity = Depends(allowed("partner-messages:read"))):
    party = party_of(identity, partner)
    with request.app.state.hub.sessions() as session:
        return find_own_message(session, party, message_id, sender)


@router.get("/refusals", summary="What the hub refused from a partner, and why, newest first")
def own_refusals(request: Request, partner: str | None = PARTY_QUERY,
                 before: int | None = Query(None, ge=1, le=MAX_ID, description="a page's `next_before`"),
                 limit: int = Query(50, ge=1, le=200),
                 identity: Identity = Depends(allowed("partner-messages:read"))):
    party = party_of(identity, partner)
    with request.app.state.hub.sessions() as session:
        items, next_before = list_refusals(session, party, before=before, limit=limit)
    return {"partner": party, "items": items, "next_before": next_before}

"""A case's exchanges as the engine kept them: the messages of one or more correlation ids with their
deliveries (one per partner: the partner's leg) and timelines, without payload bytes. Read by apps through
`Hub.case_messages` (the registry's case page in the console)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, selectinload

from hub.store.models import Delivery, Message

MAX_MESSAGES = 500  # of one case: a case exchanges a handful; a life-certificate batch is one message


def case_messages(session: Session, correlation_ids: list[str], *, limit: int = MAX_MESSAGES) -> list[dict]:
    """The messages whose CorrelationId is one of `correlation_ids`, oldest first, as plain dicts."""
    if not correlation_ids:
        return []
    query = (select(Message).where(Message.correlation_id.in_(sorted(set(correlation_ids))))
             .options(defer(Message.received_bytes), defer(Message.canonical_bytes), defer(Message.receipt),
                      selectinload(Message.deliveries).options(defer(Delivery.sent_bytes),
                                                               defer(Delivery.partner_receipt)),
                      selectinload(Message.events))
             .order_by(Message.id).limit(min(max(limit, 1), MAX_MESSAGES)))
    return [{"id": m.message_id, "sender": m.sender, "recipient": m.recipient, "type": m.type,
             "correlation_id": m.correlation_id, "in_reply_to": m.in_reply_to, "state": m.state,
             "received_at": m.received_at, "updated_at": m.updated_at,
             "deliveries": [{"id": d.id, "partner": d.partner, "state": d.state, "attempts": d.attempts,
                             "last_error": d.last_error, "delivered_at": d.delivered_at,
                             "partner_reference": d.partner_reference} for d in m.deliveries],
             "events": [{"at": e.at, "kind": e.kind, "detail": e.detail, "delivery_id": e.delivery_id,
                         "digest": e.digest, "sealed": e.chain_seq is not None} for e in m.events]}
            for m in session.scalars(query)]

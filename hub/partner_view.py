"""What a partner system sees of its own traffic: the messages it sent to the hub and those the hub sends it,
their state, its deliveries and why one failed, and the inputs of its the hub refused, with the reason.

A partner sees a message when it is the message's sender, or when the hub delivers (or is to deliver) it to
that partner (a delivery row to it: a request fanned out to several partners is each one's, whatever the
header's Recipient). Of such a message it sees only its own part: for a message it sent, the message's state,
its deliveries and its whole timeline (its own message's journey); for one sent to it, its own delivery
(state, attempts, why a send failed: its own answer, as "NARSA answered 422 ...") and the timeline rows of
that delivery, never another partner's delivery or anything else of the message. Payloads are not shown.
Anything else is "no such message" (the caller learns nothing of other parties' traffic, not even that a
message id exists).

Pages are newest first, by the messages' row id (`before`: a page's `next_before`); each branch (sent by it,
delivered to it) is read from an index, (sender, id) on messages and (partner, message_pk) on deliveries
(migration 0016), so a page costs the same at any history's size.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hub.errors import NotFound
from hub.store.models import Delivery, Message, Refusal

SENT, RECEIVED = "sent", "received"


@dataclass(frozen=True)
class TrafficFilters:
    direction: str | None = None      # SENT: by the partner; RECEIVED: to it
    type: str | None = None
    correlation_id: str | None = None
    state: str | None = None          # as the partner sees it: its message's state, or its delivery's


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _sent_ids(partner: str, filters: TrafficFilters, before: int | None, limit: int):
    where = [Message.sender == partner]
    if filters.type:
        where.append(Message.type == filters.type)
    if filters.correlation_id:
        where.append(Message.correlation_id == filters.correlation_id)
    if filters.state:
        where.append(Message.state == filters.state.upper())
    if before:
        where.append(Message.id < before)
    return select(Message.id).where(*where).order_by(Message.id.desc()).limit(limit)


def _received_ids(partner: str, filters: TrafficFilters, before: int | None, limit: int):
    where = [Delivery.partner == partner, Message.sender != partner]
    if filters.type:
        where.append(Message.type == filters.type)
    if filters.correlation_id:
        where.append(Message.correlation_id == filters.correlation_id)
    if filters.state:
        where.append(Delivery.state == filters.state.upper())
    if before:
        where.append(Delivery.message_pk < before)
    return (select(Delivery.message_pk).join(Message, Message.id == Delivery.message_pk).where(*where)
            .order_by(Delivery.message_pk.desc()).limit(limit))


def list_traffic(session: Session, partner: str, filters: TrafficFilters, *, before: int | None = None,
                 limit: int = 50) -> tuple[list[dict], int | None]:
    """(one page of `partner`'s messages as it sees them, newest first; the cursor of the next page or None)."""
    ids: set[int] = set()
    if filters.direction in (None, SENT):
        ids |= set(session.scalars(_sent_ids(partner, filters, before, limit)))
    if filters.direction in (None, RECEIVED):
        ids |= set(session.scalars(_received_ids(partner, filters, before, limit)))
    page = sorted(ids, reverse=True)[:limit]
    messages = session.scalars(select(Message).where(Message.id.in_(page)).order_by(Message.id.desc())
                               .options(selectinload(Message.deliveries))).all() if page else []
    return [as_seen_by(m, partner) for m in messages], (page[-1] if len(page) == limit else None)


def find_own_message(session: Session, partner: str, message_id: str, sender: str | None = None) -> dict:
    """One message of `partner`'s traffic with its timeline, as it sees it; NotFound, in the same words, for
    an unknown message and another party's."""
    query = (select(Message).where(Message.message_id == message_id)
             .options(selectinload(Message.deliveries), selectinload(Message.events)).order_by(Message.id))
    if sender:
        query = query.where(Message.sender == sender.upper())
    for message in session.scalars(query):
        if message.sender == partner or any(d.partner == partner for d in message.deliveries):
            return as_seen_by(message, partner, timeline=True)
    raise NotFound(f"no message with id {message_id!r} in {partner}'s traffic")


def as_seen_by(message: Message, partner: str, *, timeline: bool = False) -> dict:
    """`message` as `partner` sees it (see the module's docstring)."""
    sent = message.sender == partner
    deliveries = message.deliveries if sent else [d for d in message.deliveries if d.partner == partner]
    out = {"id": message.message_id, "direction": SENT if sent else RECEIVED, "sender": message.sender,
           "recipient": message.recipient if sent else partner, "type": message.type,
           "correlation_id": message.correlation_id, "in_reply_to": message.in_reply_to,
           "state": message.state if sent else (deliveries[0].state if deliveries else message.state),
           "digest_sha256": message.digest, "received_at": _iso(message.received_at),
           "updated_at": _iso(message.updated_at),
           "deliveries": [{"partner": d.partner, "state": d.state, "attempts": d.attempts,
                           "next_attempt_at": _iso(d.next_attempt_at) if d.state == "PENDING" else None,
                           "last_error": d.last_error, "delivered_at": _iso(d.delivered_at),
                           "partner_reference": d.partner_reference} for d in deliveries]}
    if timeline:
        own = {d.id for d in deliveries}
        out["timeline"] = [{"at": _iso(e.at), "event": e.kind, "detail": e.detail} for e in message.events
                           if e.delivery_id in own or (sent and e.delivery_id is None)]
    return out


def list_refusals(session: Session, partner: str, *, before: int | None = None, limit: int = 50
                  ) -> tuple[list[dict], int | None]:
    """The inputs the hub refused from `partner` (its door's or its token's, or claiming it as Sender), newest
    first: when, through which door, the status answered, why, and the size and SHA-256 of what arrived."""
    query = select(Refusal).where(Refusal.partner == partner)
    if before:
        query = query.where(Refusal.id < before)
    rows = session.scalars(query.order_by(Refusal.id.desc()).limit(limit)).all()
    items = [{"at": _iso(r.at), "door": r.channel, "status": r.status, "reason": r.reason, "size": r.size,
              "digest_sha256": r.digest or None} for r in rows]
    return items, (rows[-1].id if len(rows) == limit else None)

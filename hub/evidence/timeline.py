"""Events on a message's timeline: every step the hub takes with a message is one row.

An event that vouches for bytes carries their SHA-256 in `digest`, taken from the message or delivery
it is given when it is written (same transaction as the change it records):

    RECEIVED          the bytes as received (messages.received_bytes)
    VERIFIED          the canonical form the hub works from once the signature verified: the signed
                      content re-enveloped, or the mapped partner document (messages.canonical_bytes;
                      none when the hub keeps no separate canonical form)
    MAPPED_IN         the canonical form of a partner document (messages.canonical_bytes)
    ACCEPTED          the hub's signed receipt (messages.receipt)
    DUPLICATE         the bytes sent again (equal to the first: messages.digest)
    SENT              the bytes sent to the partner (deliveries.sent_bytes)
    PARTNER_RECEIPT   the partner's answer to that send, as it arrived (deliveries.partner_receipt)
    ANSWERED          the same answer, taken in as a message of its own (deliveries.partner_receipt)

A message kept in a file (hub/intake/files.py) has its RECEIVED digest over that file (messages.payload_path)
and a delivery of it its SENT digest over the file sent (deliveries.sent_path); hub/evidence/chains.py
checks those files.

Rows are written unsealed; hub/evidence/chains.py seals them into the hash chain in the background.
"""
from __future__ import annotations

import hashlib
import operator

from sqlalchemy.orm import Session

from hub.store.db import utcnow
from hub.store.models import Delivery, Event, Message
from hub.store.row_inserts import RowInsert

RECEIVED = "RECEIVED"                # bytes arrived, size and well-formedness checked
VALIDATED = "VALIDATED"              # schema valid
VERIFIED = "VERIFIED"                # sender's signature verified
MAPPED_IN = "MAPPED_IN"              # a partner's document mapped to the canonical format
CORRELATED = "CORRELATED"            # an answer matched to the message it answers
ACCEPTED = "ACCEPTED"                # stored with its receipt (the durable point)
QUEUED = "QUEUED"                    # a delivery to one recipient placed in the outbox
DUPLICATE = "DUPLICATE"              # same id and bytes again: first receipt returned
CLAIMED = "CLAIMED"                  # a worker took the delivery (with a lease)
SENT = "SENT"                        # mapped, signed and handed to the partner, who acknowledged
PARTNER_RECEIPT = "PARTNER_RECEIPT"  # what the partner answered to a send, kept as it arrived
SENT_AGAIN = "SENT_AGAIN"            # a later send of a delivery already sent: its digests in the detail
ANSWERED = "ANSWERED"                # the partner's synchronous answer taken in as a message of its own
RETRY_SCHEDULED = "RETRY_SCHEDULED"  # transient fault; next attempt planned
DEAD_LETTERED = "DEAD_LETTERED"      # permanent fault or retries exhausted
RESENT = "RESENT"                    # an operator put a dead delivery back in the outbox
PURGED = "PURGED"                    # retention: payload bytes removed, hashes and receipts kept


def sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def vouched_bytes(kind: str, message: Message, delivery: Delivery | None) -> tuple[str, bytes | None] | None:
    """(what, bytes) an event of `kind` vouches for, or None when it vouches for no bytes.

    Used when writing (the digest) and when verifying (the digest recomputed from what is stored)."""
    if kind == RECEIVED:
        return "received bytes", message.received_bytes
    if kind in (VERIFIED, MAPPED_IN):
        return "canonical bytes", message.canonical_bytes
    if kind == ACCEPTED:
        return "hub's receipt", message.receipt
    if kind in (SENT, PARTNER_RECEIPT, ANSWERED) and delivery is not None:
        if kind == SENT:
            return f"bytes sent to {delivery.partner}", delivery.sent_bytes
        return f"{delivery.partner}'s receipt", delivery.partner_receipt
    return None


def row(message_pk: int, kind: str, detail: str, at, *, digest: str | None = None,
        delivery_id: int | None = None) -> dict:
    """One unsealed event as a plain row, for writers that insert many at once (`insert_rows`); the
    caller gives the digest of the bytes it vouches for (see `vouched_bytes`)."""
    return {"message_pk": message_pk, "delivery_id": delivery_id, "at": at, "kind": kind, "detail": detail,
            "digest": digest}


_COLUMNS = ("message_pk", "delivery_id", "at", "kind", "detail", "digest")
_INSERT_EVENTS = RowInsert(Event.__table__, _COLUMNS)
_event_values = operator.itemgetter(*_COLUMNS)


def insert_rows(connection, rows: list[dict]) -> None:
    """Insert events built by `row`, in their order, on a Connection (no ORM objects: the hot paths): a
    multi-row INSERT handed to the driver (hub/store/row_inserts.py)."""
    if rows:
        _INSERT_EVENTS(connection, [_event_values(r) for r in rows])


def record(session: Session, message: Message, kind: str, detail: str = "", delivery: Delivery | None = None,
           *, digest: str | None = None) -> Event:
    """Add one event (unsealed) to `message`'s timeline; `digest` overrides the one taken from the bytes."""
    if digest is None:
        if kind == DUPLICATE:
            digest = message.digest
        else:
            vouched = vouched_bytes(kind, message, delivery)
            digest = sha256(vouched[1]) if vouched else None
    event = Event(message_pk=message.id, delivery_id=delivery.id if delivery else None, at=utcnow(),
                  kind=kind, detail=detail, digest=digest)
    session.add(event)
    return event

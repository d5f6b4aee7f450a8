"""Events on a message's timeline: every step the hub takes with a message is one row."""
from __future__ import annotations

from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.models import Delivery, Event, Message

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
ANSWERED = "ANSWERED"                # the partner's synchronous answer taken in as a message of its own
RETRY_SCHEDULED = "RETRY_SCHEDULED"  # transient fault; next attempt planned
DEAD_LETTERED = "DEAD_LETTERED"      # permanent fault or retries exhausted
RESENT = "RESENT"                    # an operator put a dead delivery back in the outbox


def record(session: Session, message: Message, kind: str, detail: str = "", delivery: Delivery | None = None) -> None:
    session.add(Event(message_pk=message.id, delivery_id=delivery.id if delivery else None, at=utcnow(),
                      kind=kind, detail=detail))

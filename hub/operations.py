"""Operator actions on stored messages (CLI and, later, the monitor)."""
from __future__ import annotations

from sqlalchemy import select

from hub import timeline
from hub.db import utcnow
from hub.errors import NotFound
from hub.models import Delivery, DeliveryState, Message, MessageState


def resend(hub, message_id: str, *, actor: str = "operator") -> int:
    """Put a message's dead deliveries back in the outbox, due now; returns how many."""
    with hub.sessions.begin() as session:
        message = session.scalars(select(Message).where(Message.message_id == message_id)).first()
        if message is None:
            raise NotFound(f"no message with id {message_id!r}")
        dead = session.scalars(select(Delivery).where(Delivery.message_pk == message.id,
                                                      Delivery.state == DeliveryState.DEAD)).all()
        for delivery in dead:
            delivery.state, delivery.attempts, delivery.next_attempt_at = DeliveryState.PENDING, 0, utcnow()
            timeline.record(session, message, timeline.RESENT, f"to {delivery.partner} by {actor}", delivery)
        if dead:
            message.state, message.updated_at = MessageState.ACCEPTED, utcnow()
    hub.wake_workers()
    return len(dead)

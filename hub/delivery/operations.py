"""Operator actions on stored messages (CLI and API). Each is recorded in the audit log with its actor."""
from __future__ import annotations

import logging

from sqlalchemy import select

from hub.evidence import audit

from hub.evidence import timeline
from hub.store.db import utcnow
from hub.errors import NotFound, PayloadPurged
from hub.store.models import Delivery, DeliveryState, Message, MessageState

log = logging.getLogger("hub.delivery")


def resend(hub, message_id: str, *, actor: str = "operator", sender: str | None = None) -> int:
    """Put a message's dead deliveries back in the outbox, due now; returns how many. `sender`: the message
    of that sender (an id is unique per sender only).

    The RESEND audit entry is written in the same transaction (also when nothing was dead: the
    attempt itself is a human action worth keeping). Raises NotFound (404) for an unknown id, and
    PayloadPurged (409) when there are dead deliveries but retention purged the payload.

    When there is something to resend, the apps' resend hooks (hub/apps.py) are told first, in a transaction
    of their own, before the deliveries are due again: what the dead letter failed (a case) waits again
    before the partner can answer, so that its history reads "resent, waiting, answered" however fast the
    answer comes. (Should the resend then find its payload purged by a retention run in between, the case
    waits for nothing and shows as overdue.)"""
    _tell_apps(hub, message_id, sender=sender, actor=actor)
    with hub.sessions.begin() as session:
        # the row locked (PostgreSQL), so a retention purge and this resend never interleave: a purge that
        # committed first is seen here (purged_at), one that comes after skips or re-checks the message
        message = session.scalars(select(Message).where(Message.message_id == message_id,
                                                        *([Message.sender == sender] if sender else []))
                                  .with_for_update()).first()
        if message is None:
            raise NotFound(f"no message with id {message_id!r}" + (f" from {sender}" if sender else ""))
        dead = session.scalars(select(Delivery).where(Delivery.message_pk == message.id,
                                                      Delivery.state == DeliveryState.DEAD)).all()
        if dead and message.purged_at is not None:
            raise PayloadPurged(f"cannot resend {message_id!r}: its payload was purged on "
                                f"{message.purged_at:%Y-%m-%d} (retention); only its hashes and receipts remain")
        for delivery in dead:
            delivery.state, delivery.attempts, delivery.next_attempt_at = DeliveryState.PENDING, 0, utcnow()
            timeline.record(session, message, timeline.RESENT, f"to {delivery.partner} by {actor}", delivery)
        if dead:
            message.state, message.updated_at = MessageState.ACCEPTED, utcnow()
        audit.record(session, actor=actor, action="RESEND", subject=message_id,
                     detail=(f"{len(dead)} dead deliver{'y' if len(dead) == 1 else 'ies'} back in the outbox: "
                             + ", ".join(d.partner for d in dead)) if dead else "nothing was dead")
    hub.wake_workers()
    return len(dead)


def _tell_apps(hub, message_id: str, *, sender: str | None, actor: str) -> None:
    """The resend hooks, for a message that has dead deliveries and its payload; a hook's failure is logged (the
    resend goes on)."""
    if not hub.resend_listeners:
        return
    with hub.sessions() as session:
        message = session.scalars(select(Message).where(Message.message_id == message_id,
                                                        *([Message.sender == sender] if sender else []))).first()
        if message is None or message.purged_at is not None or session.scalar(
                select(Delivery.id).where(Delivery.message_pk == message.id,
                                          Delivery.state == DeliveryState.DEAD).limit(1)) is None:
            return
        resent = (message.sender, message.correlation_id, message.message_id, actor)
    for listener in hub.resend_listeners:
        try:
            listener(*resent)
        except Exception:  # the resend stands; what the hook missed is in the log
            log.exception("resend listener failed for %s", message_id)

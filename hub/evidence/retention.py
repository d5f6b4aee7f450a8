"""Retention: payload bytes of final messages are removed after their route's retention; hashes stay.

A message DELIVERED or DEAD for longer than its route's `retention_days` (else
HUB_DEFAULT_RETENTION_DAYS, 365) loses its received bytes, its canonical bytes and the bytes sent to
each partner (a message kept in a file: that file and the files sent, removed once the purge is
committed). Its digests, the hub's signed receipt and the partners' receipts stay, `purged_at` is
set, and a PURGED event (its detail listing what went, with each sha256) joins the evidence chain in
the same transaction, with a PURGE audit entry listing each message as sender/message id, both dated
by the purge's clock -- so `hub evidence verify` still passes: a missing payload is accepted only where
such a purge is recorded, the route's retention elapsed between the message's receipt and the purge. "Final since" is the message's `updated_at` (the last state change).
A message with a delivery still PENDING (another recipient being retried, or a resend) is left alone;
candidates are locked (FOR UPDATE SKIP LOCKED) so a concurrent resend and the purge never interleave.

Runs daily from HubService (03:30 UTC) and on demand with `hub evidence purge [--dry-run]`.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from hub.evidence import audit

from hub.evidence import timeline
from hub.store import files
from hub.store.db import utcnow
from hub.store.models import Delivery, DeliveryState, Message, MessageState

log = logging.getLogger("hub.evidence.retention")
_BATCH = 200


@dataclass
class PurgeReport:
    dry_run: bool
    purged: list[str] = field(default_factory=list)      # message ids (sender/message_id)
    bytes_removed: int = 0

    def __str__(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        return f"{verb} {len(self.purged)} message(s), {self.bytes_removed} payload bytes"


def retention_days(hub, message_type: str) -> int:
    route = hub.config.route_for(message_type)
    return (route.retention_days if route is not None and route.retention_days else
            hub.settings.default_retention_days)


def purge_expired(hub, *, now: dt.datetime | None = None, dry_run: bool = False,
                  actor: str = "hub scheduler") -> PurgeReport:
    """Purge every final message past its retention; returns what was (or, dry, would be) purged."""
    now = now or utcnow()
    report = PurgeReport(dry_run)
    shortest = min([retention_days(hub, r.type) for r in hub.config.routes] + [hub.settings.default_retention_days])
    after_id = 0
    while True:
        unlinked: list[str] = []  # files of the messages purged in this transaction: removed once it committed
        with hub.sessions.begin() as session:
            candidates = session.scalars(candidate_query(after_id, now - dt.timedelta(days=shortest))).all()
            if not candidates:
                break
            after_id = candidates[-1].id
            purged_here = []
            for message in candidates:
                if message.updated_at >= now - dt.timedelta(days=retention_days(hub, message.type)):
                    continue
                if not _still_final(session, message):
                    continue
                report.bytes_removed += _purge(session, message, now, dry_run, unlinked)
                report.purged.append(f"{message.sender}/{message.message_id}")
                purged_here.append(f"{message.sender}/{message.message_id}")
            if purged_here and not dry_run:
                audit.record(session, actor=actor, action="PURGE", subject=f"{len(purged_here)} messages",
                             detail="retention purge of payload bytes (hashes and receipts kept): "
                                    + ", ".join(purged_here)).at = now
        for name in unlinked:
            files.resolve(hub, name).unlink(missing_ok=True)
    if report.purged and not dry_run:
        log.info("retention: %s", report)
    return report


def candidate_query(after_id: int, final_before: dt.datetime):
    """The next batch of messages that may be past retention, their rows locked for this transaction.

    FOR UPDATE SKIP LOCKED (PostgreSQL): a resend holding a message's row is left to finish (the message
    is then ACCEPTED again, not purged), and a resend that comes after waits for the purge and then finds
    the message purged (hub/delivery/operations.py locks the row too). SQLite ignores the clause: its writers are
    serialised (BEGIN IMMEDIATE, hub/store/db.py)."""
    return (select(Message).where(Message.purged_at.is_(None), Message.id > after_id,
                                  Message.state.in_((MessageState.DELIVERED, MessageState.DEAD)),
                                  Message.updated_at < final_before)
            .order_by(Message.id).limit(_BATCH).with_for_update(skip_locked=True))


def _still_final(session, message: Message) -> bool:
    """Checked inside the purge's transaction, on the row as locked: still final and not purged, and no
    delivery waiting to be sent (a DEAD message may have another delivery still PENDING, which needs the
    bytes; a resend puts its dead deliveries back to PENDING)."""
    if message.purged_at is not None or message.state not in (MessageState.DELIVERED, MessageState.DEAD):
        return False
    pending = session.scalar(select(Delivery.id).where(Delivery.message_pk == message.id,
                                                       Delivery.state == DeliveryState.PENDING).limit(1))
    return pending is None


def _purge(session, message: Message, now: dt.datetime, dry_run: bool, unlinked: list[str]) -> int:
    gone, size = [], 0
    for what, data in (("received bytes", message.received_bytes), ("canonical bytes", message.canonical_bytes)):
        if data is not None:
            gone.append(f"{what} sha256 {timeline.sha256(data)}")
            size += len(data)
    if message.payload_path is not None:
        gone.append(f"the file of the received document ({message.payload_size} bytes) sha256 {message.digest}")
        size += message.payload_size or 0
    deliveries = session.scalars(select(Delivery).where(Delivery.message_pk == message.id)).all()
    for delivery in deliveries:
        if delivery.sent_bytes is not None:
            gone.append(f"bytes sent to {delivery.partner} sha256 {timeline.sha256(delivery.sent_bytes)}")
            size += len(delivery.sent_bytes)
        if delivery.sent_path is not None and delivery.sent_path != message.payload_path:
            gone.append(f"the file sent to {delivery.partner}")
    if dry_run:
        return size
    unlinked.extend({name for name in [message.payload_path, *(d.sent_path for d in deliveries)] if name})
    message.received_bytes, message.canonical_bytes, message.purged_at = None, None, now
    message.payload_path = None
    for delivery in deliveries:
        delivery.sent_bytes, delivery.sent_path = None, None
    days = (now - message.updated_at).days
    timeline.record(session, message, timeline.PURGED,
                    f"retention: {message.state} for {days} days; removed " + "; ".join(gone)
                    + "; the hub's receipt and the partners' receipts kept").at = now  # the purge's clock
    return size

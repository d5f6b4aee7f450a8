"""The outbox: deliveries waiting for a worker, claimed with leases.

A worker claims due deliveries by writing its name and a lease expiry on them; a worker that dies
leaves claims that expire and are taken by another. On PostgreSQL the claim uses
`FOR UPDATE SKIP LOCKED` so concurrent workers (and hub processes) never wait on each other; on
SQLite every transaction is `BEGIN IMMEDIATE`, so claims are serialised by the single writer.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.models import Delivery, DeliveryState


def claim_due(session: Session, *, owner: str, limit: int, lease_seconds: int) -> list[int]:
    """Claim up to `limit` due deliveries for `owner`; returns their ids. Counts one attempt each."""
    now = utcnow()
    due = (
        select(Delivery.id)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now,
               or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if ids:
        session.execute(
            update(Delivery).where(Delivery.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                    attempts=Delivery.attempts + 1)
            .execution_options(synchronize_session=False))
    return ids


def depth(session: Session) -> dict[str, int]:
    """Pending deliveries per partner (for /metrics and the monitor)."""
    rows = session.execute(select(Delivery.partner, func.count()).where(Delivery.state == DeliveryState.PENDING)
                           .group_by(Delivery.partner))
    return {partner: count for partner, count in rows}

"""Counts over the engine's tables that several packages read (intake's back-pressure, /metrics, the monitor)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.store.models import Delivery, DeliveryState


def outbox_depths(session: Session) -> dict[str, int]:
    """Pending deliveries per partner."""
    rows = session.execute(select(Delivery.partner, func.count()).where(Delivery.state == DeliveryState.PENDING)
                           .group_by(Delivery.partner))
    return {partner: count for partner, count in rows}

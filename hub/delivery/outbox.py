"""The outbox: deliveries waiting for a worker, claimed with leases.

A worker claims due deliveries by writing its name and a lease expiry on them; a worker that dies
leaves claims that expire and are taken by another. On PostgreSQL the claim uses
`FOR UPDATE SKIP LOCKED` so concurrent workers (and hub processes) never wait on each other; on
SQLite every transaction is `BEGIN IMMEDIATE`, so claims are serialised by the single writer.

A claim can leave partners out (`exclude_partners`) and refuse candidates one by one (`take`): the
delivery workers use both to keep each partner within its in-flight limit and to skip a partner whose
circuit is open (hub/delivery/workers.py, hub/delivery/breaker.py). Deliveries left out stay PENDING, attempts untouched.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Collection, NamedTuple

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from hub.store.db import utcnow
from hub.store.models import Delivery, DeliveryState


class Claimed(NamedTuple):
    id: int
    partner: str


def claim(session: Session, *, owner: str, limit: int, lease_seconds: int,
          exclude_partners: Collection[str] = (), take: Callable[[str, int], bool] | None = None) -> list[Claimed]:
    """Claim up to `limit` due deliveries for `owner`, counting one attempt each; returns what was claimed.

    `exclude_partners`: partners whose deliveries are not even looked at (their in-flight limit is
    reached, or their circuit is open), so that their backlog never hides other partners' work.
    `take(partner, delivery_id)`: asked for each candidate in due order; False leaves it for later
    (the worker pool reserves a partner's slot this way). Candidates left are not leased and their
    row locks end with the transaction."""
    now = utcnow()
    due = (
        select(Delivery.id, Delivery.partner)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now,
               or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if exclude_partners:
        due = due.where(Delivery.partner.not_in(sorted(exclude_partners)))
    claimed = [Claimed(id_, partner) for id_, partner in session.execute(due)
               if take is None or take(partner, id_)]
    if claimed:
        session.execute(
            update(Delivery).where(Delivery.id.in_([c.id for c in claimed]))
            .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                    attempts=Delivery.attempts + 1)
            .execution_options(synchronize_session=False))
    return claimed


_DUE = (Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= bindparam("now"),
        or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < bindparam("now")))
_ANY_DUE = select(Delivery.id).where(*_DUE).limit(1)
_ANY_DUE_EXCEPT = _ANY_DUE.where(Delivery.partner.not_in(bindparam("excluded", expanding=True)))


def any_due(connection, *, exclude_partners: Collection[str] = ()) -> bool:
    """Is some delivery due now for a partner not in `exclude_partners`? A plain read (no lock, no write
    transaction on SQLite; `connection` a session or a connection that only reads) with statements built
    once: an idle or saturated worker pool asks it often, and skips a claim that would find nothing."""
    if exclude_partners:
        found = connection.execute(_ANY_DUE_EXCEPT, {"now": utcnow(), "excluded": sorted(exclude_partners)})
    else:
        found = connection.execute(_ANY_DUE, {"now": utcnow()})
    return found.first() is not None


def unclaim(session: Session, ids: list[int], *, owner: str) -> None:
    """Give back deliveries claimed by `owner` and not attempted after all: no lease, the attempt not counted."""
    if ids:
        session.execute(
            update(Delivery).where(Delivery.id.in_(ids), Delivery.lease_owner == owner,
                                   Delivery.state == DeliveryState.PENDING)
            .values(lease_owner=None, lease_expires_at=None, attempts=Delivery.attempts - 1)
            .execution_options(synchronize_session=False))


def claim_due(session: Session, *, owner: str, limit: int, lease_seconds: int,
              exclude_partners: Collection[str] = ()) -> list[int]:
    """Claim up to `limit` due deliveries for `owner`; returns their ids. Counts one attempt each."""
    return [c.id for c in claim(session, owner=owner, limit=limit, lease_seconds=lease_seconds,
                                exclude_partners=exclude_partners)]

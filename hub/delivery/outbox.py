"""The outbox: deliveries waiting for a worker, claimed with leases.

A worker claims due deliveries by writing its name and a lease expiry on them; a worker that dies
leaves claims that expire and are taken by another. On PostgreSQL the claim uses
`FOR UPDATE SKIP LOCKED` so concurrent workers (and hub processes) never wait on each other; on
SQLite every transaction is `BEGIN IMMEDIATE`, so claims are serialised by the single writer.

A claim can be limited to some partners (`partners`) and refuse candidates one by one (`take`): the
delivery workers use both to keep each partner within its in-flight limit and to skip a partner whose
circuit is open (hub/delivery/workers.py, hub/delivery/breaker.py). Deliveries left out stay PENDING, attempts untouched.

Limited to some partners, the claim looks up each of them on its own, in the index of each partner's due
deliveries (`ix_deliveries_partner_due`), and takes the first due of them all: its cost does not depend on
the backlog of the partners left out. Read from the due index alone, a partner down for a day, its backlog
growing, made every claim for the others read past all of it. Each lookup locks the rows it returns, so that
the claim's plan does not depend on what the database knows of the table (`_claimable_of`).
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Callable, Collection, Mapping, NamedTuple

from sqlalchemy import Connection, Select, bindparam, or_, select, union_all, update
from sqlalchemy.orm import Session

from hub.store.db import utcnow
from hub.store.models import Delivery, DeliveryState


class Claimed(NamedTuple):
    id: int
    partner: str


_OUTBOX = Delivery.__table__
_DUE = (_OUTBOX.c.state == DeliveryState.PENDING, _OUTBOX.c.next_attempt_at <= bindparam("now"),
        or_(_OUTBOX.c.lease_expires_at.is_(None), _OUTBOX.c.lease_expires_at < bindparam("now")))
# The claim's statements, built once (Core on the session's connection: no ORM statement work per claim; the
# partners left out go in an expanding parameter, so one cached statement serves every set of them).
_CLAIMABLE = (select(_OUTBOX.c.id, _OUTBOX.c.partner).where(*_DUE)
              .order_by(_OUTBOX.c.next_attempt_at, _OUTBOX.c.id)
              .limit(bindparam("limit")).with_for_update(skip_locked=True))


def _due_of(partners: int, columns, *, lock: str | None = None) -> Select:
    """The due deliveries of `partners` partners (parameters p0, p1, ...), each looked up on its own, the
    first l0, l1, ... of each: a union, of which the caller takes the first in due order.

    Each partner's lookup is ordered as its index is (ix_deliveries_partner_due: partner, state, then
    next_attempt_at), so that the database reads that index from its first due entry and stops after l rows,
    whatever it knows of the table: ordered otherwise (the id as a tie-break), PostgreSQL without statistics (a
    new schema, or autovacuum off) read and sorted the partner's whole backlog for every claim.

    `lock` ("skip" or "wait"): each lookup locks the rows it returns (FOR UPDATE, SKIP LOCKED or waiting), so
    that its limit counts the rows this claim can lease, not those another claim holds now."""
    firsts = []
    for i in range(partners):
        first = (select(*columns).where(*_DUE, _OUTBOX.c.partner == bindparam(f"p{i}"))
                 .order_by(_OUTBOX.c.next_attempt_at).limit(bindparam(f"l{i}")))
        if lock is not None:
            first = first.with_for_update(skip_locked=lock == "skip")
        firsts.append(first.subquery().select())
    return union_all(*firsts).subquery()


@functools.lru_cache(maxsize=64)
def _claimable_of(partners: int, lock: str = "skip") -> Select:
    """_CLAIMABLE for `partners` partners (statements built once per number of partners): the first due of the
    rows each partner's lookup locked (`_due_of`).

    The rows are locked where they are looked up, and nowhere else. A row that another claim leased and
    committed after this statement's snapshot is locked all the same (SKIP LOCKED skips only rows locked now);
    PostgreSQL then checks the lookup's conditions again on the row's new version, and the lease just taken
    excludes it (without that check, the delivery would be sent twice). Locked by an outer statement
    re-reading the table instead, PostgreSQL without statistics drove the claim from the due index through
    the whole backlog: 10 ms a claim behind 4,000 deliveries waiting. SQLite ignores the locks: it runs one
    claim at a time (BEGIN IMMEDIATE)."""
    due = _due_of(partners, (_OUTBOX.c.id, _OUTBOX.c.partner, _OUTBOX.c.next_attempt_at), lock=lock)
    return select(due.c.id, due.c.partner).order_by(due.c.next_attempt_at, due.c.id).limit(bindparam("limit"))


@functools.lru_cache(maxsize=64)
def _any_due_of(partners: int) -> Select:
    due = _due_of(partners, (_OUTBOX.c.id,))
    return select(due.c.id).limit(1)


def _of(partners: Collection[str] | Mapping[str, int], limit: int) -> dict[str, str | int]:
    """The parameters naming each partner and the most of its deliveries to read (its own, given a mapping)."""
    parameters: dict[str, str | int] = {}
    for i, partner in enumerate(sorted(partners)):
        parameters[f"p{i}"] = partner
        parameters[f"l{i}"] = min(limit, partners[partner]) if isinstance(partners, Mapping) else limit
    return parameters


_LEASE = (update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
          .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"),
                  attempts=_OUTBOX.c.attempts + 1))
_LEASE_RETURNING = _LEASE.returning(*_OUTBOX.c)


def _connection(session: Session | Connection) -> Connection:
    return session.connection() if isinstance(session, Session) else session


def claim(session: Session | Connection, *, owner: str, limit: int, lease_seconds: int,
          partners: Collection[str] | Mapping[str, int] | None = None, take: Callable[[str, int], bool] | None = None,
          rows: dict | None = None) -> list[Claimed]:
    """Claim up to `limit` due deliveries for `owner`, counting one attempt each; returns what was claimed.

    `session`: a session or a connection, in the claim's transaction.
    `partners`: the only partners whose deliveries are looked at (None: every partner); the workers leave
    out those at their in-flight limit or with their circuit open, so that their backlog never hides, nor
    slows the claim of, other partners' work. A mapping gives the most of each partner's deliveries worth
    reading (the workers: what its free slots can take), so that a backlog is not read past in vain.
    `take(partner, delivery_id)`: asked for each candidate in due order; False leaves it for later
    (the worker pool reserves a partner's slot this way). Candidates left are not leased and their
    row locks end with the transaction.
    `rows`: given (on a database that can return rows from an UPDATE), it is filled with the claimed
    deliveries' rows as leased (id -> row), returned by the claim's update itself."""
    now = utcnow()
    connection = _connection(session)
    if partners is None:
        due = connection.execute(_CLAIMABLE, {"now": now, "limit": limit})
    elif not partners:
        return []
    else:
        statement = _claimable_of(len(partners))
        due = connection.execute(statement, {"now": now, "limit": limit, **_of(partners, limit)})
    claimed = [Claimed(id_, partner) for id_, partner in due.all() if take is None or take(partner, id_)]
    if claimed:
        lease = {"ids": [c.id for c in claimed], "owner": owner, "until": now + dt.timedelta(seconds=lease_seconds)}
        if rows is None:
            connection.execute(_LEASE, lease)
        else:
            rows.update((row.id, row) for row in connection.execute(_LEASE_RETURNING, lease))
    return claimed


_ANY_DUE = select(_OUTBOX.c.id).where(*_DUE).limit(1)


def any_due(connection, *, partners: Collection[str] | None = None) -> bool:
    """Is some delivery due now for one of `partners` (None: any partner)? A plain read (no lock, no write
    transaction on SQLite; `connection` a session or a connection that only reads) with statements built
    once: an idle or saturated worker pool asks it often, and skips a claim that would find nothing."""
    if partners is None:
        found = connection.execute(_ANY_DUE, {"now": utcnow()})
    elif not partners:
        return False
    else:
        found = connection.execute(_any_due_of(len(partners)), {"now": utcnow(), **_of(partners, 1)})
    return found.first() is not None


_UNLEASE = (update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)),
                                  _OUTBOX.c.lease_owner == bindparam("owner"),
                                  _OUTBOX.c.state == DeliveryState.PENDING)
            .values(lease_owner=None, lease_expires_at=None, attempts=_OUTBOX.c.attempts - 1))


def unclaim(session: Session | Connection, ids: list[int], *, owner: str) -> None:
    """Give back deliveries claimed by `owner` and not attempted after all: no lease, the attempt not counted."""
    if ids:
        _connection(session).execute(_UNLEASE, {"ids": list(ids), "owner": owner})


def claim_due(session: Session | Connection, *, owner: str, limit: int, lease_seconds: int,
              partners: Collection[str] | None = None) -> list[int]:
    """Claim up to `limit` due deliveries for `owner`; returns their ids. Counts one attempt each."""
    return [c.id for c in claim(session, owner=owner, limit=limit, lease_seconds=lease_seconds,
                                partners=partners)]

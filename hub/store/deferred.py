"""Deferred writes: the rows a batch of changes writes without reading them back, sent once all the changes are
made, as one executemany per statement.

The registry's answers are the busiest changes the hub writes (hub/apps.py `ChangingConsumer`): each is a case
locked and read, a document and a history row inserted, the case updated. On PostgreSQL every statement is a
round trip while the group-commit transaction holds its batch, so the batch's inserts and updates are kept
here and sent together at the end: psycopg pipelines an executemany, so each statement costs one round trip
for the whole batch instead of one per change.

    write(session, statement, parameters)   executes now; or, on a session whose changes are deferred (`of`
                                            finds a DeferredWrites in it), keeps the row for `send`
    DeferredWrites.send(connection)          the rows kept, in the order their statements were first used

What a change reads must not miss what an earlier change of the batch has kept: a change that reads through its
session (an ORM query, `Session.get`, an autoflush) has the rows kept so far sent first (`ChangeSession`). A
change that reads on the connection itself, past the session, may only read what no kept row changes (the
registry's `case_for_answer`, whose case is remembered in `memo` for the rest of the batch; `memo` is emptied
whenever the rows are sent, after which a read is a read of the database again).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "hub.deferred_writes"


class DeferredWrites:
    def __init__(self):
        self._rows: dict[Any, list[dict]] = {}
        self.memo: dict[Any, Any] = {}  # what the batch's changes read and keep up to date themselves

    def __bool__(self) -> bool:  # something to send, or something remembered that a read must forget
        return bool(self._rows or self.memo)

    def add(self, statement, parameters: dict) -> None:
        self._rows.setdefault(statement, []).append(parameters)

    def send(self, connection) -> None:
        rows, self._rows = self._rows, {}
        self.memo.clear()
        for statement, parameters in rows.items():
            connection.execute(statement, parameters)


def of(session: Session) -> DeferredWrites | None:
    return session.info.get(_KEY)


def write(session: Session, statement, parameters: dict) -> None:
    deferred = of(session)
    if deferred is None:
        session.execute(statement, parameters)
    else:
        deferred.add(statement, parameters)


class ChangeSession(Session):
    """An ORM session for changes whose plain writes are deferred to `deferred.send`; what is read through it
    sees them."""

    def __init__(self, deferred: DeferredWrites, **kwargs):
        super().__init__(info={_KEY: deferred}, **kwargs)


@event.listens_for(ChangeSession, "do_orm_execute")
def _send_before_reading(state) -> None:
    deferred = of(state.session)
    if deferred:
        deferred.send(state.session.connection())


@event.listens_for(ChangeSession, "before_flush")
def _send_before_flushing(session, _flush_context, _instances) -> None:
    deferred = of(session)
    if deferred:
        deferred.send(session.connection())

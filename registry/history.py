"""The case status history as a chain of the hub's evidence: the rows of `case_events` (registry/models.py)
are sealed by the hub into the chain "cases" and walked by `hub evidence verify` (hub/apps.py ChainedHistory,
hub/evidence/chains.py), each entry's line

    ["cases", seq, at, case reference, service, status, actor, note]

A row changed in SQL no longer matches what was sealed. What the chain alone cannot see, `problems` checks
against the sealed history: a case whose status is not its history's last (the status edited, the history
left alone), and a history that moves where the service's status machine does not allow (a row appended,
e.g. REFUSED then AUTHORISED: a final status has no successor).
"""
from __future__ import annotations

from typing import Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from hub.apps import ChainedHistory
from registry.models import Case, CaseEvent
from registry.statuses import machine

_SHOWN = 10  # problems named at most (verify names the first)


def _rows():
    return (select(CaseEvent.id, CaseEvent.at, CaseEvent.status, CaseEvent.actor, CaseEvent.note,
                   CaseEvent.chain_seq, CaseEvent.content_hash, CaseEvent.chain_hash, Case.reference, Case.service)
            .join(Case, CaseEvent.case_id == Case.id))


def _fields(row) -> list:
    return [row.at, row.reference, row.service, row.status, row.actor, row.note or ""]


def problems(session: Session) -> Iterator[str]:
    yield from statuses_off_history(session)
    yield from moves_outside_the_machine(session)


def statuses_off_history(session: Session) -> Iterator[str]:
    """Cases whose status is not the status of their last history row."""
    last = (select(CaseEvent.case_id, func.max(CaseEvent.id).label("last_id"))
            .group_by(CaseEvent.case_id).subquery())
    event = aliased(CaseEvent)
    rows = session.execute(select(Case.reference, Case.status, event.status, event.id)
                           .outerjoin(last, last.c.case_id == Case.id)
                           .outerjoin(event, event.id == last.c.last_id)
                           .where((event.id.is_(None)) | (event.status != Case.status))
                           .order_by(Case.id).limit(_SHOWN))
    for reference, status, recorded, event_id in rows:
        yield (f"case {reference} has status {status}, but its history has no row" if event_id is None else
               f"case {reference} has status {status}, but its history's last row ({event_id}) records {recorded}")


def moves_outside_the_machine(session: Session) -> Iterator[str]:
    """History rows, in order per case, whose status its service's machine does not allow after the one before
    (a row keeping the status, a note, is allowed)."""
    query = (select(CaseEvent.case_id, CaseEvent.id, CaseEvent.status, Case.reference, Case.service)
             .join(Case, CaseEvent.case_id == Case.id).order_by(CaseEvent.case_id, CaseEvent.id)
             .execution_options(yield_per=5000))
    shown, previous = 0, (None, None)
    for case_id, event_id, status, reference, service in session.execute(query):
        before_case, before = previous
        if case_id == before_case and status != before:
            try:
                allowed = machine(service).get(before, frozenset())
            except KeyError:  # a service the registry does not have
                allowed = frozenset()
            if status not in allowed:
                yield (f"case {reference}: its history goes from {before} to {status} (row {event_id}), "
                       f"which a {service} case cannot do")
                shown += 1
                if shown == _SHOWN:
                    return
        previous = (case_id, status)


CASE_HISTORY = ChainedHistory("cases", CaseEvent.__table__, rows=_rows, fields=_fields, check=problems)

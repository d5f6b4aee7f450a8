"""Registry operations. Keyword-only functions taking the session explicitly; views stay thin."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Callable

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from hub.store import deferred
from hub.store.db import utcnow
from hub.errors import NotFound
from hub.xml.text import for_the_record
from registry import citizen_search
from registry.models import Case, CaseDocument, CaseEvent, Citizen, Post
from registry.statuses import FAILED, check_transition, is_final
from registry.catalogue import module_for
from registry import posts

NOTE_LIMIT = 500  # characters of a case history note
# What building a request from a case's stored data raises when that data cannot make one (lxml refuses a
# control character, a field is missing): a defect of the case that sending again cannot mend.
UNBUILDABLE = (ValueError, TypeError, KeyError)


def get_post(session: Session, *, code: str) -> Post:
    post = session.get(Post, code)
    if post is None:
        raise NotFound(f"no consular post with code {code!r}")
    return post


def register_citizen(session: Session, *, post_code: str, given_name_latin: str, family_name_latin: str,
                     given_name_arabic: str, family_name_arabic: str, birth_date: dt.date, sex: str,
                     country: str, city: str, birth_place: str = "", cnie: str | None = None,
                     passport_number: str | None = None, address_lines: str = "", phone: str | None = None,
                     email: str | None = None, status: str = "ACTIVE") -> Citizen:
    posts.require_open(session, code=post_code, doing="registering a citizen")  # a closed post takes no one new
    citizen = Citizen(registration_id="MRE-PENDING", post_code=post_code, given_name_latin=given_name_latin,
                      family_name_latin=family_name_latin, given_name_arabic=given_name_arabic,
                      family_name_arabic=family_name_arabic, birth_date=birth_date, sex=sex, country=country,
                      city=city, birth_place=birth_place, cnie=cnie, passport_number=passport_number,
                      address_lines=address_lines, phone=phone, email=email, registered_at=utcnow(),
                      status=status)
    session.add(citizen)
    session.flush()
    citizen.registration_id = f"MRE-{citizen.id:07d}"  # stable across posts: never derived from the post
    citizen_search.reindex(session, citizen)
    return citizen


def get_citizen(session: Session, *, registration_id: str) -> Citizen:
    citizen = session.scalars(select(Citizen).where(Citizen.registration_id == registration_id)).first()
    if citizen is None:
        raise NotFound(f"no citizen with registration id {registration_id!r}")
    return citizen


def open_case(session: Session, *, service: str, citizen: Citizen | None, details: dict, actor: str,
              post_code: str | None = None, status: str = "SUBMITTED", note: str = "case opened") -> Case:
    """A new case of `service` at `post_code`, else at the citizen's post; no post when there is neither
    (a judicial document for an addressee nobody registered)."""
    now = utcnow()
    post_code = post_code or (citizen.post_code if citizen is not None else None)
    if post_code is not None:
        get_post(session, code=post_code)
    case = Case(reference=f"PENDING-{uuid.uuid4().hex}", service=service, citizen_id=citizen.id if citizen else None,
                post_code=post_code, status=status, details=details, created_at=now, updated_at=now)
    session.add(case)
    session.flush()
    case.reference = f"{module_for(service).PREFIX}-{now:%Y}-{case.id:06d}"
    session.add(CaseEvent(case_id=case.id, at=now, status=status, actor=actor, note=note))
    return case


def find_citizen_by_cnie(session: Session, *, cnie: str) -> Citizen | None:
    """The active registered citizen holding this CNIE (upper-cased, spaces removed), if any."""
    normalised = cnie.replace(" ", "").upper()
    return session.scalars(select(Citizen).where(Citizen.cnie == normalised, Citizen.status == "ACTIVE")
                           .order_by(Citizen.id)).first()


# Built once: every partner's answer looks its case up (the statement's cache key is then computed once too)
_CASE_BY_REFERENCE = select(Case).where(Case.reference == bindparam("reference"))
_CASE_BY_REFERENCE_FOR_UPDATE = _CASE_BY_REFERENCE.with_for_update()


def get_case(session: Session, *, reference: str, for_update: bool = False) -> Case:
    query = _CASE_BY_REFERENCE_FOR_UPDATE if for_update else _CASE_BY_REFERENCE
    case = session.scalars(query, {"reference": reference}).first()
    if case is None:
        raise NotFound(f"no case with reference {reference!r}")
    return case


class AnsweredCase:
    """A case as a partner's answer changes it, without the ORM: read, locked, with one statement built once
    (`case_for_answer`), changed by the same helpers as an ORM case (`move_case`, `note_case`,
    `attach_document`), written back with one UPDATE (`save_answer`). Answers are the registry's busiest path
    (every DGSN acknowledgement, three clearances per repatriation), and the ORM's unit of work was most of
    what applying one cost (docs/performance.md)."""
    __slots__ = ("id", "reference", "service", "status", "outcome", "partner_reference", "updated_at", "_as_read")

    def __init__(self, id: int, reference: str, service: str, status: str, outcome: dict | None,
                 partner_reference: str | None):
        self.id, self.reference, self.service, self.status = id, reference, service, status
        self.outcome, self.partner_reference, self.updated_at = outcome, partner_reference, None
        self._as_read = (status, outcome, partner_reference)

    @property
    def changed(self) -> bool:
        return self.updated_at is not None or (self.status, self.outcome, self.partner_reference) != self._as_read

    def saved(self) -> None:
        self.updated_at, self._as_read = None, (self.status, self.outcome, self.partner_reference)


_CASE_FOR_ANSWER = (select(Case.id, Case.reference, Case.service, Case.status, Case.outcome, Case.partner_reference)
                    .where(Case.reference == bindparam("reference")).with_for_update())
_SAVE_ANSWER = (update(Case.__table__).where(Case.__table__.c.id == bindparam("case_id"))
                .values(status=bindparam("status"), outcome=bindparam("outcome"),
                        partner_reference=bindparam("partner_reference"), updated_at=bindparam("updated_at")))
_ADD_EVENT = insert(CaseEvent.__table__)
_ADD_DOCUMENT = insert(CaseDocument.__table__)


def case_for_answer(session: Session, *, reference: str) -> AnsweredCase:
    """The case an answer names, locked until the transaction ends; NotFound when there is none. In a batch of
    answers whose writes are deferred (hub/store/deferred.py), the case is read once and the batch's later
    answers to it are given the same AnsweredCase, as the earlier ones left it."""
    batch = deferred.of(session)
    if batch is not None and (case := batch.memo.get((AnsweredCase, reference))) is not None:
        return case
    row = session.connection().execute(_CASE_FOR_ANSWER, {"reference": reference}).first()
    if row is None:
        raise NotFound(f"no case with reference {reference!r}")
    case = AnsweredCase(*row)
    if batch is not None:
        batch.memo[(AnsweredCase, reference)] = case
    return case


def save_answer(session: Session, case: AnsweredCase) -> None:
    """Write back what the answer changed in the case, if anything (its history and documents are written as
    they come)."""
    if not case.changed:
        return
    deferred.write(session, _SAVE_ANSWER, {"case_id": case.id, "status": case.status, "outcome": case.outcome,
                                           "partner_reference": case.partner_reference,
                                           "updated_at": case.updated_at or utcnow()})
    case.saved()


def after_commit(session: Session, work: Callable[[], None]) -> None:
    """Have `work()` run once what `session` changed is committed (a follow-up message, say): a delivery's change
    commits with the hub's record of that delivery, not with a commit of the session's own (registry/app.py)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(work)


def after_commit_of(session: Session) -> Callable[[], None] | None:
    """What `after_commit` asked of `session`, as one callable (None when nothing)."""
    works = session.info.pop(_AFTER_COMMIT, None)
    if not works:
        return None

    def run() -> None:
        for work in works:
            work()
    return run


_AFTER_COMMIT = "registry.after_commit"


def request_id(case: Case, suffix: str = "") -> str:
    """The registry's message id for the case's request (`suffix` for its other messages): deterministic, so
    submitting the same case again is recognised by the hub as the same message; a retry (`case.attempt` 2 and
    on, registry/case_actions.py) is a new attempt and a new message."""
    attempt = case.attempt or 1
    return f"REGISTRY-{case.reference}{suffix}" + (f"-R{attempt}" if attempt > 1 else "")


def move_case(session: Session, *, case: Case | AnsweredCase, status: str, actor: str, note: str = "",
              action: bool = False) -> bool:
    """Apply a status transition; returns False (and changes nothing) when the case is already final.
    `action`: a person's act on the case, or its wait again after a resend (registry/statuses.py), which a
    final status does not stop (the machine still decides).

    The note is kept as history every reader of the case sees: the values an error text quotes (a partner's,
    the hub's) are withheld and its length bounded (hub/xml/text.py)."""
    if is_final(case.service, case.status) and not action:
        return False
    check_transition(case.service, case.status, status)
    if case.status == FAILED and not action:  # a resent message's late answer takes the case on (registry/statuses.py)
        note = f"after the failure, a late answer: {note}"
    case.status, case.updated_at = status, utcnow()
    _add_event(session, case, actor, note)
    return True


def note_case(session: Session, *, case: Case | AnsweredCase, actor: str, note: str) -> None:
    """A history row that keeps the case's status: something happened that changes nothing (a second dead
    letter of a case already FAILED)."""
    case.updated_at = utcnow()
    _add_event(session, case, actor, note)


def _add_event(session: Session, case: Case | AnsweredCase, actor: str, note: str) -> None:
    """The case's history row for its status now (inserted at once, a statement built once: no unit of work)."""
    _write(session, case, _ADD_EVENT, {"case_id": case.id, "at": case.updated_at, "status": case.status,
                                       "actor": actor, "note": for_the_record(note, NOTE_LIMIT)})


def attach_document(session: Session, *, case: Case | AnsweredCase, kind: str, content: bytes,
                    source_message_id: str) -> None:
    _write(session, case, _ADD_DOCUMENT, {"case_id": case.id, "kind": kind, "content": content,
                                          "source_message_id": source_message_id, "received_at": utcnow()})


def _write(session: Session, case: Case | AnsweredCase, statement, parameters: dict) -> None:
    """A row of the case's history or documents, inserted now; an answered case's may wait for the end of its
    batch (`case_for_answer`). An ORM case's are not deferred: they keep their order with the rows the ORM
    writes for it (the case's first history row, `open_case`)."""
    if isinstance(case, AnsweredCase):
        deferred.write(session, statement, parameters)
    else:
        session.execute(statement, parameters)


def case_counts(session: Session) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for service, status, n in session.execute(select(Case.service, Case.status, func.count())
                                              .group_by(Case.service, Case.status)):
        counts.setdefault(service, {})[status] = n
    return counts

"""A batch of the registry's answers, applied in the hub's transaction with their plain writes deferred to its end
(hub/store/deferred.py): each answer sees what the batch's earlier ones did, the rows are those that writing
them one by one would give, and a refused row leaves nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from hub.delivery import workers
from hub.errors import TransientDeliveryError
from registry import service
from registry.app import Registry
from registry.models import Case, CaseDocument, CaseEvent

pytestmark = pytest.mark.both_databases


@pytest.fixture
def cases(hub):
    """Opens n repatriation cases (SUBMITTED, no message) and gives their references."""
    Registry(hub).load_reference_data()

    def open_cases(n: int) -> list[str]:
        with hub.sessions.begin() as session:
            made = [service.open_case(session, service="REPATRIATION", citizen=None, details={}, actor="test",
                                      post_code="FR-PARIS") for _ in range(n)]
            session.flush()
            return [case.reference for case in made]
    return open_cases


def clearance(reference: str, authority: str, *, last: bool = False):
    """An answer's change as the registry's handlers make it on an answered case."""
    def change(session):
        case = service.case_for_answer(session, reference=reference)
        granted = dict((case.outcome or {}).get("granted", {}), **{authority: True})
        case.outcome = {"granted": granted}
        service.attach_document(session, case=case, kind=f"CLEARANCE_{authority}", content=authority.encode(),
                                source_message_id=f"{reference}-{authority}")
        if case.status == "SUBMITTED":
            service.move_case(session, case=case, status="AWAITING_CLEARANCES", actor="hub", note="accepted")
        if last:
            service.move_case(session, case=case, status="AUTHORISED", actor="hub", note=f"{sorted(granted)}")
        service.save_answer(session, case)
    return change


def apply(hub, changes, *, alone: bool = False) -> list[str]:
    """The changes applied as the delivery workers do, in one transaction; the statements sent, in order."""
    sent: list[str] = []
    with hub.engine.begin() as connection:
        event.listen(connection, "before_cursor_execute",
                     lambda conn, cursor, statement, *args: sent.append(statement.split()[0]))
        workers._apply(connection, changes, alone=alone)
    return sent


def history(hub, reference: str) -> tuple[str, dict, list[tuple[str, str]], list[str]]:
    with hub.sessions() as session:
        case = service.get_case(session, reference=reference)
        events = session.execute(select(CaseEvent.status, CaseEvent.note).where(CaseEvent.case_id == case.id)
                                 .order_by(CaseEvent.id)).all()
        documents = session.scalars(select(CaseDocument.kind).where(CaseDocument.case_id == case.id)
                                    .order_by(CaseDocument.id)).all()
        return case.status, case.outcome, [tuple(e) for e in events], list(documents)


def test_answers_to_one_case_in_a_batch_see_each_other_and_their_rows_go_at_the_end(hub, cases):
    [reference] = cases(1)
    sent = apply(hub, [clearance(reference, "SANTE"), clearance(reference, "DGSN"),
                       clearance(reference, "ETAT_CIVIL", last=True)])
    assert sent[0] == "SELECT" and "SELECT" not in sent[1:], "the case read once, then remembered for the batch"
    assert sent.count("UPDATE") + sent.count("INSERT") <= 3 * 2, "one executemany per statement, not per answer"
    status, outcome, events, documents = history(hub, reference)
    assert status == "AUTHORISED"
    assert outcome == {"granted": {"SANTE": True, "DGSN": True, "ETAT_CIVIL": True}}
    assert events == [("SUBMITTED", "case opened"), ("AWAITING_CLEARANCES", "accepted"),
                      ("AUTHORISED", "['DGSN', 'ETAT_CIVIL', 'SANTE']")]
    assert documents == ["CLEARANCE_SANTE", "CLEARANCE_DGSN", "CLEARANCE_ETAT_CIVIL"]


def test_a_later_change_reading_through_its_session_sees_the_earlier_answers_rows(hub, cases):
    [reference] = cases(1)
    seen = {}

    def reader(session):  # an ORM handler of the same batch: its read sends what the batch kept so far
        case = service.get_case(session, reference=reference, for_update=True)
        seen["status"], seen["documents"] = case.status, len(case.documents)
        service.move_case(session, case=case, status="ESCALATED", actor="hub", note="by the ORM")

    apply(hub, [clearance(reference, "SANTE"), reader, clearance(reference, "DGSN")])
    assert seen == {"status": "AWAITING_CLEARANCES", "documents": 1}
    status, outcome, events, documents = history(hub, reference)
    assert status == "ESCALATED", "the answer after the ORM's change read the case again, not the batch's copy"
    assert outcome == {"granted": {"SANTE": True, "DGSN": True}}
    assert [e[0] for e in events] == ["SUBMITTED", "AWAITING_CLEARANCES", "ESCALATED"]
    assert documents == ["CLEARANCE_SANTE", "CLEARANCE_DGSN"]


def test_a_case_only_read_by_an_answer_is_read_again_after_an_orm_change(hub, cases):
    """An answer that writes nothing (SANTE again: ignored) leaves its case remembered; the ORM's change to it
    must not be undone by the batch's next answer."""
    [reference] = cases(1)
    apply(hub, [clearance(reference, "SANTE")])  # AWAITING_CLEARANCES

    def read_only(session):
        service.case_for_answer(session, reference=reference)

    def escalate(session):
        case = service.get_case(session, reference=reference, for_update=True)
        service.move_case(session, case=case, status="ESCALATED", actor="hub", note="by the ORM")

    apply(hub, [read_only, escalate, clearance(reference, "DGSN")])
    status, outcome, events, _documents = history(hub, reference)
    assert status == "ESCALATED" and outcome == {"granted": {"SANTE": True, "DGSN": True}}
    assert [e[0] for e in events] == ["SUBMITTED", "AWAITING_CLEARANCES", "ESCALATED"]


def test_a_deferred_row_the_database_refuses_is_a_transient_refusal_and_leaves_nothing(hub, cases):
    first, second = cases(2)

    def refused(session):  # a document without its kind (NOT NULL): refused when the batch's rows are sent
        case = service.case_for_answer(session, reference=second)
        service.attach_document(session, case=case, kind=None, content=b"x", source_message_id="m")
        service.move_case(session, case=case, status="AWAITING_CLEARANCES", actor="hub", note="accepted")
        service.save_answer(session, case)

    with pytest.raises(TransientDeliveryError, match="the consumer's change could not be written"):
        apply(hub, [clearance(first, "SANTE"), refused], alone=True)
    for reference in (first, second):
        status, _outcome, events, documents = history(hub, reference)
        assert (status, len(events), documents) == ("SUBMITTED", 1, [])

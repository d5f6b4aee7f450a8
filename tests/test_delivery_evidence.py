"""What a delivery keeps as evidence when a send is repeated or its answer is refused.

The bytes sent and the partner's answer are written once: the timeline's digests vouch for them, so a
second send (a lease that expired during a slow send, an operator's resend) is recorded as SENT_AGAIN
with its own digests, and the chain still verifies. A send whose answer the hub refuses still keeps
what was sent and what came back."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import event, select, update

from hub.delivery import outbox, workers as engine
from hub.errors import PermanentDeliveryError, TransientDeliveryError, WriteAlone
from hub.evidence import audit
from hub.evidence.chains import verify_chains
from hub.store.group_commit import GroupCommitter, _Item
from hub.store.models import AuditEntry, Delivery, DeliveryState, Event
from hub.intake.door import Arrival
from support import licence_request

pytestmark = pytest.mark.both_databases  # storage is the subject


def _only_delivery(hub) -> int:
    with hub.sessions() as session:
        return session.scalars(select(Delivery.id)).one()


def _kinds(hub, delivery_id: int) -> list[tuple[str, str]]:
    with hub.sessions() as session:
        return [(e.kind, e.detail) for e in session.scalars(select(Event).where(Event.delivery_id == delivery_id)
                                                            .order_by(Event.id))]


def test_a_second_send_keeps_the_first_bytes_and_records_its_own_digests(hub, pki_dir):
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    delivery_id = _only_delivery(hub)
    engine._record_delivered(hub, delivery_id, (b"<first/>", b"<ack n='1'/>", "over REST: 202"), None)
    engine._record_delivered(hub, delivery_id, (b"<second/>", b"<ack n='2'/>", "over REST: 202"), None)
    with hub.sessions() as session:
        kept = session.get(Delivery, delivery_id)
        assert (kept.state, kept.sent_bytes, kept.partner_receipt) == (DeliveryState.DELIVERED, b"<first/>",
                                                                       b"<ack n='1'/>")
    kinds = _kinds(hub, delivery_id)
    again = [detail for kind, detail in kinds if kind == "SENT_AGAIN"]
    assert [kind for kind, _ in kinds].count("SENT") == 1 and len(again) == 1
    assert hashlib.sha256(b"<second/>").hexdigest() in again[0]
    assert hashlib.sha256(b"<ack n='2'/>").hexdigest() in again[0]
    report = verify_chains(hub)
    assert report.ok, report.lines()


def test_a_refused_answer_still_keeps_what_was_sent_and_answered(hub, pki_dir):
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    delivery_id = _only_delivery(hub)
    error = PermanentDeliveryError("delivered, but NARSA's answer was refused: signature does not verify")
    assert engine._record_failure(hub, delivery_id, error, "REST",
                                  (b"<sent/>", b"<answer/>", "over REST: 200")) == DeliveryState.DEAD
    with hub.sessions() as session:
        kept = session.get(Delivery, delivery_id)
        assert (kept.state, kept.sent_bytes, kept.partner_receipt) == (DeliveryState.DEAD, b"<sent/>", b"<answer/>")
    assert [kind for kind, _ in _kinds(hub, delivery_id)][-3:] == ["SENT", "PARTNER_RECEIPT", "DEAD_LETTERED"]
    report = verify_chains(hub)
    assert report.ok, report.lines()


def _claimed_outcomes(hub, pki_dir, n: int) -> list:
    """n requests to NARSA accepted and claimed, and their senders' outcomes, each with the row as read after
    the claim (as a sender has it)."""
    for i in range(1, n + 1):
        hub.receive(Arrival("registry", data=licence_request(pki_dir, reference=f"LIC-2026-{i:06d}",
                                                             number=f"12/{i:06d}"), caller="REGISTRY"))
    with hub.sessions.begin() as session:
        ids = sorted(c.id for c in outbox.claim(session, owner="w1", limit=n, lease_seconds=60))
    with hub.sessions() as session:
        read = {d.id: engine._so_far(d) for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    return [engine._Delivered(i, (f"<sent n='{i}'/>".encode(), b"<ack/>", "over REST: 202"), None, read[i])
            for i in ids]


def _write_as_one_batch(hub, outcomes) -> list[int]:
    """The outcomes given to group commit as one batch; the items of each transaction it ran."""
    committer, transactions = GroupCommitter(hub.engine), []
    original = committer._transaction
    committer._transaction = lambda batch: transactions.append(len(batch)) or original(batch)
    items = [_Item(engine._write_delivered, outcome) for outcome in outcomes]
    committer._commit(items)
    for item in items:
        item.future.result(10)
    return transactions


def test_a_batch_of_outcomes_updates_its_deliveries_in_one_statement(hub, pki_dir):
    outcomes = _claimed_outcomes(hub, pki_dir, 3)
    updates = []

    def listener(_connection, _cursor, statement, *_):
        if statement.startswith("UPDATE deliveries"):
            updates.append(statement)

    event.listen(hub.engine, "before_cursor_execute", listener)
    try:
        assert _write_as_one_batch(hub, outcomes) == [3]
    finally:
        event.remove(hub.engine, "before_cursor_execute", listener)
    assert len(updates) == 1, "one executemany for the three deliveries"
    for outcome in outcomes:
        assert [kind for kind, _ in _kinds(hub, outcome.delivery_id)][-2:] == ["SENT", "PARTNER_RECEIPT"]
    with hub.sessions() as session:
        assert set(session.scalars(select(Delivery.state))) == {DeliveryState.DELIVERED}


def test_a_delivery_changed_since_its_sender_read_it_sends_the_batch_back_one_by_one(hub, pki_dir):
    """Its lease ran out and another worker claimed it (attempt 2) while the first sender still sent: the
    batch's conditional updates find one row fewer than they were given, nothing of the batch is kept, and
    each outcome is written alone, that one after reading its row again."""
    outcomes = _claimed_outcomes(hub, pki_dir, 3)
    changed = outcomes[1].delivery_id
    with hub.sessions.begin() as session:
        session.execute(update(Delivery).where(Delivery.id == changed).values(attempts=2, lease_owner="w2"))
    with pytest.raises(WriteAlone, match="1 of 3 deliveries changed"):
        with hub.engine.begin() as connection:
            engine._write_delivered(connection, outcomes)
    with hub.sessions() as session:
        assert set(session.scalars(select(Delivery.state))) == {DeliveryState.PENDING}, "the batch kept nothing"

    assert _write_as_one_batch(hub, outcomes) == [3, 1, 1, 1]
    with hub.sessions() as session:
        assert set(session.scalars(select(Delivery.state))) == {DeliveryState.DELIVERED}
    for outcome in outcomes:
        [(kind, detail)] = [(k, d) for k, d in _kinds(hub, outcome.delivery_id) if k.startswith("SENT")]
        assert kind == "SENT" and f"(attempt {2 if outcome.delivery_id == changed else 1})" in detail, detail
    report = verify_chains(hub)
    assert report.ok, report.lines()


def _audited(hub) -> list[str]:
    with hub.sessions() as session:
        return sorted(session.scalars(select(AuditEntry.subject).where(AuditEntry.action == "CONSUMED")))


def _change(hub, subject: str, *, refuse: bool = False):
    """A consumer's change (hub/apps.py `ChangingConsumer`): an audit row written on the ORM session given it,
    then, when `refuse`, a permanent refusal."""
    def change(session):
        audit.record(session, actor="consumer", action="CONSUMED", subject=subject)
        session.flush()  # written, so that the refusal has something to undo
        if refuse:
            raise PermanentDeliveryError(f"{subject} names no case")
    return change


def test_a_consumers_change_commits_with_its_outcome_and_a_refused_one_leaves_nothing(hub, pki_dir):
    outcomes = [outcome._replace(change=_change(hub, f"d{outcome.delivery_id}", refuse=index == 1),
                                 conversation=f"c{index}")
                for index, outcome in enumerate(_claimed_outcomes(hub, pki_dir, 3))]
    refused = outcomes[1].delivery_id
    committer, items = GroupCommitter(hub.engine), [_Item(engine._write_delivered, o) for o in outcomes]
    committer._commit(items)
    with pytest.raises(PermanentDeliveryError, match="names no case"):
        items[1].future.result(10)
    assert [items[0].future.result(10), items[2].future.result(10)] == [None, None]  # nothing to run after

    assert _audited(hub) == sorted(f"d{o.delivery_id}" for o in outcomes if o.delivery_id != refused)
    with hub.sessions() as session:
        states = dict(session.execute(select(Delivery.id, Delivery.state)).all())
    assert states == {o.delivery_id: DeliveryState.PENDING if o.delivery_id == refused else DeliveryState.DELIVERED
                      for o in outcomes}, "the refused change's outcome is not written either"
    assert [kind for kind, _ in _kinds(hub, refused)] == ["QUEUED"], "nothing recorded as sent"


def test_a_batch_written_again_one_by_one_applies_each_change_once(hub, pki_dir):
    outcomes = [outcome._replace(change=_change(hub, f"d{outcome.delivery_id}"))
                for outcome in _claimed_outcomes(hub, pki_dir, 3)]
    with hub.sessions.begin() as session:  # a lease ran out and another worker claimed it meanwhile
        session.execute(update(Delivery).where(Delivery.id == outcomes[0].delivery_id).values(attempts=2))
    assert _write_as_one_batch(hub, outcomes) == [3, 1, 1, 1]
    assert _audited(hub) == sorted(f"d{o.delivery_id}" for o in outcomes), "each change once, not with the batch"


def test_a_change_whose_rows_the_database_refuses_is_retried_and_the_others_commit(hub, pki_dir):
    """An audit row without its time (NOT NULL), refused at the session's flush: that outcome comes back as a
    transient failure, its rows undone; the batch's other outcomes and changes are committed with it."""
    def unwritable(session):
        session.add(AuditEntry(actor="consumer", action="CONSUMED", subject="no time"))
    outcomes = _claimed_outcomes(hub, pki_dir, 3)
    outcomes = [outcome._replace(change=unwritable if index == 1 else _change(hub, f"d{outcome.delivery_id}"))
                for index, outcome in enumerate(outcomes)]
    committer, items = GroupCommitter(hub.engine), [_Item(engine._write_delivered, o) for o in outcomes]
    committer._commit(items)
    with pytest.raises(TransientDeliveryError, match="the consumer's change could not be written"):
        items[1].future.result(10)
    assert _audited(hub) == sorted(f"d{o.delivery_id}" for o in (outcomes[0], outcomes[2]))
    with hub.sessions() as session:
        assert session.get(Delivery, outcomes[1].delivery_id).state == DeliveryState.PENDING
        assert session.get(Delivery, outcomes[2].delivery_id).state == DeliveryState.DELIVERED

"""A partner's synchronous answer, taken in by the delivery worker that sent what it answers, goes on to the
registry (a consumer in the same process) from that worker: its delivery is stored leased to the worker
(hub/intake/accept.py `Lease`), with no claim in between, and handed on by `DeliveryWorkers._deliver_leased`.
The lease is an ordinary one: not delivered (the worker stopped, the process died), it runs out and any
worker claims the delivery."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from lxml import etree
from sqlalchemy import event, select, update

from hub.apps import ChangingConsumer
from hub.delivery import workers
from hub.errors import PermanentDeliveryError, UnknownCorrelation
from hub.evidence import audit
from hub.delivery.outbox import claim
from hub.delivery.workers import DeliveryWorkers
from hub.intake import accept
from hub.intake.door import Arrival
from hub.store.db import utcnow
from hub.store.models import AuditEntry, Delivery, DeliveryState, Event, Message
from hub.xml.envelope import Header
from sigtools import narsa_result
from support import licence_request, signer_for

WORKER = "worker-1"


@pytest.fixture
def consumed(hub):
    """The hub with the registry's deliveries consumed in this process: the messages handed over, kept."""
    handed = []
    hub.attach_local_consumer("REGISTRY", handed.append)
    return hub, handed


def narsa_answer(pki_dir, number: int = 1) -> bytes:
    """NARSA's signed answer (its message id NARSA-R-<number>) to the licence request of `take_in_answer`."""
    document = narsa_result(None)
    document[0].text = f"NARSA-R-{number:06d}"
    return etree.tostring(signer_for(pki_dir, "NARSA").sign(document), xml_declaration=True, encoding="UTF-8")


def take_in_answer(hub, pki_dir, lease_to: str | None = WORKER, number: int = 1):
    """NARSA's answer to a licence request the hub routed to it, taken in as the worker taking it from NARSA's
    synchronous reply does (`lease_to`: that worker)."""
    if number == 1:
        hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    return hub.receive(Arrival("answer", data=narsa_answer(pki_dir, number), partner="NARSA", lease_to=lease_to))


def claimable(hub, partner: str = "REGISTRY") -> list[int]:
    with hub.engine.begin() as connection:
        found = claim(connection, owner="another-worker", limit=10, lease_seconds=60, partners=[partner])
        connection.rollback()  # looked at, not taken
    return [c.id for c in found]


def row(hub, table, row_id: int) -> dict:
    with hub.engine.connect() as connection:
        return dict(connection.execute(select(table).where(table.c.id == row_id)).one()._mapping)


@pytest.mark.both_databases
def test_the_answers_delivery_to_the_registry_is_stored_leased_to_the_worker(consumed, pki_dir):
    hub, _handed = consumed
    before = utcnow()
    receipt = take_in_answer(hub, pki_dir)
    [leased] = receipt.leased
    stored = row(hub, Delivery.__table__, leased.id)
    assert (leased.partner, stored["partner"], stored["state"]) == ("REGISTRY", "REGISTRY", DeliveryState.PENDING)
    assert (stored["lease_owner"], stored["attempts"]) == (WORKER, 1)  # as a claim leaves it
    lease = dt.timedelta(seconds=hub.settings.lease_seconds)
    assert before + lease <= stored["lease_expires_at"] <= utcnow() + lease
    # the rows the worker is given are the rows as stored: it sends from them without reading them back
    assert leased.delivery == stored
    assert leased.message == row(hub, Message.__table__, stored["message_pk"])
    assert claimable(hub) == []  # no other worker takes it meanwhile

    with hub.engine.begin() as connection:  # the worker never delivered it: its lease runs out
        connection.execute(update(Delivery).where(Delivery.id == leased.id)
                           .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert claimable(hub) == [leased.id]


def test_no_lease_without_a_worker_or_without_a_consumer_in_this_process(hub, pki_dir):
    receipt = take_in_answer(hub, pki_dir)  # the registry consumes elsewhere: the dispatchers claim it
    assert receipt.leased == ()
    [pending] = claimable(hub)
    assert row(hub, Delivery.__table__, pending)["lease_owner"] is None

    hub.attach_local_consumer("REGISTRY", lambda outbound: None)
    assert take_in_answer(hub, pki_dir, lease_to=None, number=2).leased == ()  # not taken in by a worker
    assert len(claimable(hub)) == 2


def test_the_worker_hands_the_answer_on_or_gives_it_back(consumed, pki_dir):
    hub, handed = consumed
    workers = DeliveryWorkers(hub)  # not started: its sender threads are not there to take the queued lane
    partner = "REGISTRY"

    [queued] = take_in_answer(hub, pki_dir, lease_to=workers.owner).leased
    workers._deliver_leased((queued,))  # a free slot: queued for an idle sender thread
    assert workers._jobs.qsize() == 1 and workers.slots.full() == set() and handed == []

    for _ in range(workers.slots.limits[partner] - 1):  # the registry's slots all taken: this thread delivers it itself
        assert workers.slots.take(partner)
    [inline] = take_in_answer(hub, pki_dir, lease_to=workers.owner, number=2).leased
    workers._deliver_leased((inline,))
    assert [outbound.message_id for outbound in handed] == [inline.message["message_id"]]
    assert row(hub, Delivery.__table__, inline.id)["state"] == DeliveryState.DELIVERED

    for _ in range(hub.settings.breaker_failures):  # the registry's circuit open: given back for the dispatcher
        workers.breakers.failed(partner)
    [given_back] = take_in_answer(hub, pki_dir, lease_to=workers.owner, number=3).leased
    workers._deliver_leased((given_back,))
    stored = row(hub, Delivery.__table__, given_back.id)
    assert (stored["state"], stored["lease_owner"], stored["attempts"]) == (DeliveryState.PENDING, None, 0)
    assert given_back.id in claimable(hub) and len(handed) == 1


def test_the_worker_parses_the_partners_answer_once(consumed, pki_dir, monkeypatch):
    """The worker parses a synchronous answer to find its route, and intake is given that tree: the same
    bytes are not parsed again."""
    hub, _handed = consumed
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    parsed = []
    for module in (workers, accept):
        def counted(data, *args, _parse=module.parse_untrusted, **kwargs):
            parsed.append(len(data))
            return _parse(data, *args, **kwargs)
        monkeypatch.setattr(module, "parse_untrusted", counted)
    answer = narsa_answer(pki_dir)
    message_id, [leased] = workers.take_in_answer(hub, "NARSA", answer, lease_to=WORKER)
    assert parsed == [len(answer)]
    assert row(hub, Delivery.__table__, leased.id)["partner"] == "REGISTRY"
    assert row(hub, Message.__table__, leased.delivery["message_pk"])["message_id"] == message_id


def changing_consumer(hub, *, refuse: bool = False) -> list:
    """The registry's kind of consumer attached (hub/apps.py `ChangingConsumer`): its change an audit row naming
    the message; what it runs after the commit records the audit rows then committed, seen on a connection of
    its own."""
    after_commit = []

    def prepare(outbound):
        def change(session):
            audit.record(session, actor="consumer", action="CONSUMED", subject=outbound.message_id)
            if refuse:
                raise PermanentDeliveryError(f"no case for {outbound.message_id}")
            return lambda: after_commit.append(consumed_subjects(hub))
        return change

    hub.attach_local_consumer("REGISTRY", ChangingConsumer(receive=lambda outbound: None, prepare=prepare))
    return after_commit


def consumed_subjects(hub) -> list[str]:
    with hub.engine.connect() as connection:
        return list(connection.scalars(select(AuditEntry.subject).where(AuditEntry.action == "CONSUMED")))


def deliver_counting_commits(hub, leased) -> tuple[str, int]:
    commits = []
    counted = commits.append
    event.listen(hub.engine, "commit", counted)
    try:
        outcome = workers.attempt(hub, leased.id, (workers._Row(**leased.delivery), workers._Row(**leased.message)))
    finally:
        event.remove(hub.engine, "commit", counted)
    return outcome.state, len(commits)


@pytest.mark.both_databases
def test_a_changing_consumers_change_commits_with_the_record_of_its_delivery(hub, pki_dir):
    after_commit = changing_consumer(hub)
    [leased] = take_in_answer(hub, pki_dir).leased
    assert deliver_counting_commits(hub, leased) == (DeliveryState.DELIVERED, 1)
    assert after_commit == [[leased.message["message_id"]]], "run once, after the commit"
    assert row(hub, Delivery.__table__, leased.id)["lease_owner"] is None


@pytest.mark.both_databases
def test_a_change_the_consumer_refuses_dead_letters_its_delivery_and_leaves_nothing(hub, pki_dir):
    after_commit = changing_consumer(hub, refuse=True)
    [leased] = take_in_answer(hub, pki_dir).leased
    assert deliver_counting_commits(hub, leased) == (DeliveryState.DEAD, 1)  # the dead letter; the change rolled back
    assert consumed_subjects(hub) == [] and after_commit == []
    assert "no case for NARSA-R-000001" in row(hub, Delivery.__table__, leased.id)["last_error"]


def correlation_reads(hub) -> list[str]:
    """The statements looking up the message an answer names (`CORRELATION_QUERY`), from now on."""
    reads = []

    def looked_up(conn, cursor, statement: str, *args) -> None:
        if statement.startswith("SELECT") and "EXISTS" in statement:
            reads.append(statement)
    event.listen(hub.read_engine, "before_cursor_execute", looked_up)
    return reads


def test_an_answer_to_the_message_its_worker_just_sent_is_correlated_without_a_read(consumed, pki_dir):
    hub, _handed = consumed
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    sent = accept.SentMessage("NARSA", "REGISTRY-LIC-2026-000001", "LIC-2026-000001")
    reads = correlation_reads(hub)
    message_id, _leased = workers.take_in_answer(hub, "NARSA", narsa_answer(pki_dir), lease_to=WORKER, answering=sent)
    assert reads == []
    with hub.engine.connect() as connection:
        details = connection.scalars(select(Event.detail).join(Message, Message.id == Event.message_pk)
                                     .where(Message.message_id == message_id, Event.kind == "CORRELATED")).all()
    assert details == ["answers REGISTRY-LIC-2026-000001 in case LIC-2026-000001"]


def test_an_answer_naming_another_message_or_case_than_the_one_sent_is_checked_as_any_other(consumed, pki_dir):
    hub, _handed = consumed
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    answer = Header("NARSA-R-000001", "LIC-2026-000001", "REGISTRY-LIC-2026-000001", "LicenceResult", "NARSA",
                    "REGISTRY", "2026-11-23T10:00:00Z")
    reads = correlation_reads(hub)
    with pytest.raises(UnknownCorrelation, match="belongs to case 'LIC-2026-000009'"):
        accept._correlated(hub, answer, accept.SentMessage("NARSA", "REGISTRY-LIC-2026-000001", "LIC-2026-000009"))
    assert reads == [], "the message sent is the one the answer names: its case decides"
    elsewhere = accept.SentMessage("NARSA", "REGISTRY-LIC-2026-000002", "LIC-2026-000002")
    assert accept._correlated(hub, answer, elsewhere)[0] == "CORRELATED" and len(reads) == 1, "read, as without it"
    from_another = replace(answer, sender="DGSN")
    with pytest.raises(UnknownCorrelation, match="which the hub never sent to DGSN"):
        accept._correlated(hub, from_another, accept.SentMessage("NARSA", "REGISTRY-LIC-2026-000001", "LIC-2026-000001"))
    assert len(reads) == 2
    with pytest.raises(ValueError, match="from the partner its message was sent to"):
        Arrival("answer", data=b"<x/>", partner="DGSN", answering=elsewhere)


def test_a_finished_lane_of_a_partner_found_with_nothing_due_brings_no_look(consumed, pki_dir):
    """The registry's answers come leased to the worker that took them in, so the dispatcher finds no registry work
    to claim: when their lanes finish, it does not look again (a claim or a read each) until a wake-up names the
    registry or a poll interval has passed."""
    hub, _handed = consumed
    workers = DeliveryWorkers(hub)  # not started: the test plays the dispatcher
    take_in_answer(hub, pki_dir, lease_to=workers.owner)  # NARSA's delivery of the request due; the answer's leased
    hub.wait_for_work(0, seen=hub.work_generation - 1)  # the wake-up naming NARSA, seen
    statements = []
    event.listen(hub.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    workers._claim_for_idle_threads(workers.owner)  # NARSA's delivery claimed
    assert workers._jobs.qsize() == 1 and not workers._known_empty("REGISTRY")  # a claim finding none says little
    assert workers._worth_a_look(set(), {"REGISTRY"})
    workers._claim_for_idle_threads(workers.owner)  # a claim that finds nothing...
    assert workers._jobs.qsize() == 1 and not workers._known_empty("REGISTRY")
    workers._claim_for_idle_threads(workers.owner)  # ...is followed by a read, which finds nothing due
    assert workers._known_empty("REGISTRY") and workers._known_empty("NARSA")
    assert not workers._worth_a_look(set(), {"REGISTRY"})  # a registry lane finished: no look
    statements.clear()
    assert workers._claim_for_idle_threads(workers.owner) is False and statements == []  # nobody to look for

    take_in_answer(hub, pki_dir, lease_to=None, number=2)  # an answer not leased: its registry delivery due
    _seen, woken = hub.wait_for_work(0, seen=hub.work_generation - 1)
    assert woken == {"REGISTRY"} and workers._worth_a_look(woken) and not workers._known_empty("REGISTRY")
    workers._claim_for_idle_threads(workers.owner)
    assert workers._jobs.qsize() == 2

    assert workers._known_empty("NARSA") and not workers._worth_a_look(set(), {"NARSA"})
    workers._found_empty["NARSA"] -= hub.settings.poll_interval_seconds  # a poll interval later: looked at again
    assert not workers._known_empty("NARSA") and workers._worth_a_look(set(), {"NARSA"})

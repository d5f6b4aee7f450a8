"""Deliveries to a consumer in the hub's process (the registry, a `local` transport): consumed in the
transaction that records them delivered, and a partner's synchronous answer handed to it by the delivery
worker that took the answer in, at once: leased to that worker as it is stored, no claim, no wake-up."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from hub.apps import install
from hub.delivery import workers
from hub.delivery.outbox import claim
from hub.delivery.workers import DeliveryWorkers, deliver_due_messages
from hub.intake.door import Arrival
from hub.store.db import utcnow
from hub.store.models import Delivery, DeliveryState, Event, Message
from registry import service
from registry.app import Registry
from registry.models import Case, CaseEvent
from registry.services import passport

pytestmark = pytest.mark.both_databases  # storage is the subject


@pytest.fixture
def registry(hub):
    registry = Registry(hub)
    install(hub, registry)
    registry.load_reference_data()
    return registry


@pytest.fixture
def dgsn(start_sandbox):
    """DGSN answering each application synchronously; its later status callbacks held back (an hour)."""
    return start_sandbox("dgsn", "http://127.0.0.1:9", extra_args=["--answer-delay", "3600"])


def _submit_passport_case(hub, registry) -> str:
    """A passport case as the registry leaves it once the hub accepted its request (AWAITING_PARTNER)."""
    with hub.sessions.begin() as session:
        citizen = service.register_citizen(session, post_code="FR-PARIS", given_name_latin="Youssef",
                                           family_name_latin="El Amrani", given_name_arabic="يوسف",
                                           family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12), sex="M",
                                           country="FR", city="Paris", birth_place="Casablanca", cnie="BK123456")
        now = utcnow().replace(microsecond=0).isoformat()
        case = service.open_case(session, service=passport.SERVICE, citizen=citizen, actor="test",
                                 status="AWAITING_PARTNER",
                                 details={"kind": "FIRST", "collection_post": "FR-PARIS",
                                          "enrolment": {"reference": "ENR-FR-PARIS-000001", "captured_at": now}})
        data, reference = passport.build_request(registry, case), case.reference
    hub.receive(Arrival("registry", data=data, caller="REGISTRY"))
    return reference


def _status(hub, reference: str) -> str:
    with hub.sessions() as session:
        return service.get_case(session, reference=reference).status


def _answer_delivery(hub) -> Delivery:
    with hub.sessions() as session:
        return session.scalars(select(Delivery).join(Message, Message.id == Delivery.message_pk)
                               .where(Message.sender == "DGSN", Delivery.partner == "REGISTRY")).one()


def test_the_answer_reaches_the_registry_from_the_worker_that_took_it_in(hub, registry, dgsn):
    reference = _submit_passport_case(hub, registry)
    # one claim: DGSN's delivery; its answer's delivery to the registry follows in the same call, unclaimed
    assert deliver_due_messages(hub, owner="test", limit=1) == 2
    assert _status(hub, reference) == "ACKNOWLEDGED"
    answer = _answer_delivery(hub)
    assert (answer.state, answer.attempts, answer.lease_owner) == (DeliveryState.DELIVERED, 1, None)
    with hub.sessions() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.delivery_id == answer.id).order_by(Event.id)))
    assert kinds == ["QUEUED", "SENT"]
    assert deliver_due_messages(hub, owner="test") == 0  # nothing left waiting in the outbox


def test_an_answer_leased_to_a_worker_that_died_is_claimed_once_its_lease_runs_out(hub, registry, dgsn):
    """The worker took the answer in and died before delivering it: no one else claims it while the lease runs,
    then the next claim does, as any lapsed claim."""
    reference = _submit_passport_case(hub, registry)
    with hub.sessions.begin() as session:
        [(delivery_id, _partner)] = claim(session, owner="dead", limit=1, lease_seconds=60)
    outcome = workers.attempt(hub, delivery_id, lease_to="dead")  # the answer taken in, leased; the worker dies
    [(answer_id, partner)] = outcome.then
    assert partner == "REGISTRY" and _answer_delivery(hub).lease_owner == "dead"
    assert deliver_due_messages(hub, owner="other") == 0 and _status(hub, reference) == "AWAITING_PARTNER"
    with hub.sessions.begin() as session:  # the lease runs out
        session.get(Delivery, answer_id).lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    assert deliver_due_messages(hub, owner="other") == 1
    assert _status(hub, reference) == "ACKNOWLEDGED"
    assert (_answer_delivery(hub).state, _answer_delivery(hub).attempts) == (DeliveryState.DELIVERED, 2)


def test_a_consumer_that_fails_leaves_nothing_of_its_writes_and_the_delivery_is_retried(hub, registry, dgsn):
    """The consumer writes in the delivery's transaction: when it fails after writing (here the case moved, then
    an error), its writes are rolled back with the delivery left to retry, never half applied."""
    reference = _submit_passport_case(hub, registry)
    applied = registry.handlers["PassportApplicationAcknowledged"]

    def fails_after_writing(registry_, session, envelope):
        applied(registry_, session, envelope)
        session.flush()
        raise RuntimeError("the consumer's own failure, after its writes")
    registry.handlers["PassportApplicationAcknowledged"] = fails_after_writing
    with hub.sessions() as session:
        events_before = session.scalar(select(func.count()).select_from(CaseEvent))
    assert deliver_due_messages(hub, owner="test", limit=1) == 2
    answer = _answer_delivery(hub)
    assert answer.state == DeliveryState.PENDING and "RuntimeError" in answer.last_error
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CaseEvent)) == events_before
        assert session.scalars(select(Case.partner_reference).where(Case.reference == reference)).one() is None
    assert _status(hub, reference) == "AWAITING_PARTNER"
    registry.handlers["PassportApplicationAcknowledged"] = applied  # mended: the retry applies it, once
    with hub.sessions.begin() as session:
        session.get(Delivery, answer.id).next_attempt_at = utcnow()
    assert deliver_due_messages(hub, owner="test") == 1
    assert _status(hub, reference) == "ACKNOWLEDGED"
    with hub.sessions() as session:
        moved = session.scalars(select(CaseEvent.status).join(Case).where(Case.reference == reference)).all()
    assert moved.count("ACKNOWLEDGED") == 1


def test_a_worker_gives_back_an_answer_whose_consumer_circuit_is_open(hub, registry, dgsn):
    """The pool's thread does not deliver what its answer leased to it when the consumer's circuit is open: it
    gives it back to the outbox (unleased, the attempt not counted), for the dispatcher's trial."""
    reference = _submit_passport_case(hub, registry)
    pool = DeliveryWorkers(hub, count=1)
    for _ in range(hub.settings.breaker_failures):
        pool.breakers.failed("REGISTRY")
    assert pool.breakers.state("REGISTRY") == "open"
    with hub.sessions.begin() as session:
        [claimed] = claim(session, owner="pool", limit=1, lease_seconds=60)
    pool._deliver(claimed)
    answer = _answer_delivery(hub)
    assert (answer.state, answer.attempts, answer.lease_owner) == (DeliveryState.PENDING, 0, None)
    assert _status(hub, reference) == "AWAITING_PARTNER"


def test_the_pool_queues_an_answer_for_its_next_idle_thread_within_the_consumer_limit(hub, registry, dgsn):
    """What an answer leased to the pool waits, while its consumer is at its in-flight limit, for a slot to free:
    then an idle thread delivers it (no claim: it stays leased to the pool until then)."""
    reference = _submit_passport_case(hub, registry)
    pool = DeliveryWorkers(hub, count=2)
    for _ in range(pool.slots.limit):
        assert pool.slots.take("REGISTRY")
    with hub.sessions.begin() as session:
        [claimed] = claim(session, owner=pool.owner, limit=1, lease_seconds=60)
    pool._deliver(claimed)
    answer = _answer_delivery(hub)
    assert pool._leased == [(answer.id, "REGISTRY")] and pool._jobs.empty()
    assert (answer.state, answer.lease_owner) == (DeliveryState.PENDING, pool.owner)
    assert deliver_due_messages(hub, owner="other") == 0  # leased: no one else takes it meanwhile
    pool.slots.release("REGISTRY")
    pool._queue_leased_waiting()
    assert pool._leased == [] and pool._jobs.qsize() == 1
    pool._jobs.put(None)
    pool._send()  # an idle thread's loop: the queued lane, then the end
    assert _answer_delivery(hub).state == DeliveryState.DELIVERED and _status(hub, reference) == "ACKNOWLEDGED"

"""Intake's batched writes (hub/store/group_commit.py `store`, hub/intake/accept.py `store_accepted`): the
intakes waiting together are written in a few statements and one commit; a duplicate or a lost connection
in the batch gives each caller its own outcome and leaves nothing half-written, and an unknown correlation
is refused before the batch. Against the real database; the writer is held until every intake of the batch is queued."""
from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from lxml import etree
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from hub.errors import DuplicateConflict, UnknownCorrelation
from hub.evidence import timeline
from hub.evidence.chains import seal_pending, verify_chains
from hub.intake.door import Arrival
from hub.store.group_commit import GroupCommitter
from hub.store.models import Delivery, Event, Message
from support import licence_request, signer_for

pytestmark = pytest.mark.both_databases  # storage is the subject
NARSA_NS = "urn:ma:narsa:authentification-permis:1"
EVENTS_OF_A_REQUEST = 5  # RECEIVED, VALIDATED, VERIFIED, ACCEPTED, QUEUED (one recipient: NARSA)


def _request(pki_dir, i: int) -> bytes:
    return licence_request(pki_dir, reference=f"LIC-2026-{i:06d}", number=f"12/{i:06d}")


def _narsa_answer(pki_dir, *, answer_id: str, in_reply_to: str, case: str) -> bytes:
    n = lambda tag: f"{{{NARSA_NS}}}{tag}"  # noqa: E731
    root = etree.Element(n("ResultatAuthentification"), nsmap={None: NARSA_NS})
    for tag, text in (("IdentifiantMessage", answer_id), ("ReferenceDemande", in_reply_to),
                      ("ReferenceDossier", case), ("ReferenceNarsa", "NARSA-2026-999001"),
                      ("DateDecision", dt.datetime.now(dt.timezone.utc).isoformat()), ("Verdict", "AUTHENTIQUE")):
        etree.SubElement(root, n(tag)).text = text
    return etree.tostring(signer_for(pki_dir, "NARSA").sign(root))


class HeldWriter:
    """The hub's committer, grouped, with its writer held busy until `release`: the intakes submitted
    meanwhile queue behind it and are written as one batch. `transactions` lists each transaction's size."""

    def __init__(self, hub):
        hub.committer.close()
        self.committer = hub.committer = GroupCommitter(hub.engine)
        self.transactions: list[int] = []
        original = self.committer._transaction
        self.committer._transaction = lambda batch: self.transactions.append(len(batch)) or original(batch)
        self._started, self._gate = threading.Event(), threading.Event()
        self.pool = ThreadPoolExecutor(32)
        self._held = self.pool.submit(self.committer.store, self._hold, None)
        assert self._started.wait(10)

    def _hold(self, connection, items):
        self._started.set()
        self._gate.wait(20)
        return [None] * len(items)

    def _waiting(self) -> int:
        """The writes waiting: queued, and the one the writer thread took and waits to commit."""
        return self.committer._queue.qsize() + self.committer._writer_waiting

    def submit_all(self, hub, arrivals: list[Arrival], *, refused_before: int = 0) -> list:
        """Each arrival through `hub.receive` in a thread of its own, all queued (but the `refused_before` that
        intake refuses before their write), then written together: their outcomes (a Receipt, or the exception
        raised), in order."""
        futures = [self.pool.submit(hub.receive, arrival) for arrival in arrivals]
        deadline = time.monotonic() + 30
        expected = len(arrivals) - refused_before
        while self._waiting() < expected:  # each intake verified, signed, and waiting
            assert time.monotonic() < deadline, f"only {self._waiting()} of {expected} queued"
            time.sleep(0.01)
        self._gate.set()
        self._held.result(10)
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(30))
            except Exception as exc:  # noqa: BLE001 -- the outcome under test
                outcomes.append(exc)
        self.pool.shutdown()
        self.committer.close()
        return outcomes


def _stored(hub) -> dict[str, tuple[int, int]]:
    """message id -> (its deliveries, its events)."""
    with hub.sessions() as session:
        ids = dict(session.execute(select(Message.id, Message.message_id)).all())
        deliveries = dict(session.execute(select(Delivery.message_pk, func.count()).group_by(Delivery.message_pk)).all())
        events = dict(session.execute(select(Event.message_pk, func.count()).group_by(Event.message_pk)).all())
        orphans = session.scalar(select(func.count()).select_from(Event).where(Event.message_pk.not_in(ids)))
    assert orphans == 0
    return {message_id: (deliveries.get(pk, 0), events.get(pk, 0)) for pk, message_id in ids.items()}


def _evidence_seals(hub) -> None:
    seal_pending(hub)
    report = verify_chains(hub)
    assert report.ok, report


def test_a_batch_is_written_in_one_transaction_with_each_timeline_in_order(hub, pki_dir):
    held = HeldWriter(hub)
    statements = []
    event.listen(hub.engine, "before_cursor_execute",
                 lambda _c, _cursor, statement, _p, _ctx, _many: statements.append(statement.split("(")[0].strip()))
    outcomes = held.submit_all(hub, [Arrival("registry", data=_request(pki_dir, i), caller="REGISTRY")
                                     for i in range(1, 13)])
    print(f"12 intakes queued behind a held write: transactions of {held.transactions} writes; "
          f"inserts {[s for s in statements if s.startswith('INSERT')]}")
    assert [o.duplicate for o in outcomes] == [False] * 12
    assert held.transactions == [1, 12]
    assert [s for s in statements if s.startswith("INSERT")] == [
        "INSERT INTO messages", "INSERT INTO deliveries", "INSERT INTO events"]
    assert _stored(hub) == {f"REGISTRY-LIC-2026-{i:06d}": (1, EVENTS_OF_A_REQUEST) for i in range(1, 13)}
    with hub.sessions() as session:  # each message's events together, in the order they happened
        kinds = session.execute(select(Message.message_id, Event.kind).join(Event, Event.message_pk == Message.id)
                                .order_by(Event.id)).all()
    expected = [timeline.RECEIVED, timeline.VALIDATED, timeline.VERIFIED, timeline.ACCEPTED, timeline.QUEUED]
    for start in range(0, len(kinds), EVENTS_OF_A_REQUEST):
        chunk = kinds[start:start + EVENTS_OF_A_REQUEST]
        assert len({message_id for message_id, _kind in chunk}) == 1 and [k for _m, k in chunk] == expected
    _evidence_seals(hub)


def test_a_duplicate_in_the_middle_of_a_batch_refuses_only_itself(hub, pki_dir):
    requests = [_request(pki_dir, i) for i in range(1, 11)]
    conflicting = licence_request(pki_dir, reference="LIC-2026-000007", number="99/999999")  # same id, other bytes
    inputs = requests[:5] + [requests[2], conflicting] + requests[5:]
    held = HeldWriter(hub)
    outcomes = held.submit_all(hub, [Arrival("registry", data=data, caller="REGISTRY") for data in inputs])
    named = [type(o).__name__ if isinstance(o, Exception) else ("duplicate" if o.duplicate else "accepted")
             for o in outcomes]
    print(f"a batch with a repeat and a conflicting copy: transactions of {held.transactions} writes; outcomes {named}")
    # which copy of an id is first is decided by the order the intakes reached the writer: the first is stored
    first, again = sorted((outcomes[2], outcomes[5]), key=lambda receipt: receipt.duplicate)
    assert (first.duplicate, again.duplicate) == (False, True) and again.body == first.body
    copies = {6: conflicting, 8: requests[6]}
    [refused] = [i for i in copies if isinstance(outcomes[i], DuplicateConflict)]
    [stored_copy] = [i for i in copies if i != refused]
    assert not outcomes[stored_copy].duplicate
    assert all(not outcomes[i].duplicate for i in range(len(inputs)) if i not in (2, 5, 6, 8))
    # the batch rolled back by the unique violation, then each write on its own
    assert held.transactions == [1, len(inputs)] + [1] * len(inputs)
    assert _stored(hub) == {f"REGISTRY-LIC-2026-{i:06d}": (1, EVENTS_OF_A_REQUEST + (i == 3)) for i in range(1, 11)}
    with hub.sessions() as session:
        kept = session.scalar(select(Message.received_bytes).where(Message.message_id == "REGISTRY-LIC-2026-000007"))
    assert kept == copies[stored_copy]
    _evidence_seals(hub)


def test_an_unknown_correlation_is_refused_before_the_batch_and_writes_nothing(hub, pki_dir):
    """An answer is correlated with a read before its write transaction (the write lock is held for writes
    alone): the one naming no message is refused there, and the others of the batch commit together."""
    original = _request(pki_dir, 1)
    hub.receive(Arrival("registry", data=original, caller="REGISTRY"))  # delivered to NARSA: answerable
    known = _narsa_answer(pki_dir, answer_id="NARSA-R-000001", in_reply_to="REGISTRY-LIC-2026-000001",
                          case="LIC-2026-000001")
    unknown = _narsa_answer(pki_dir, answer_id="NARSA-R-000002", in_reply_to="REGISTRY-LIC-2026-424242",
                            case="LIC-2026-424242")
    arrivals = ([Arrival("registry", data=_request(pki_dir, i), caller="REGISTRY") for i in range(2, 6)]
                + [Arrival("rest-partner", data=unknown, partner="NARSA"),
                   Arrival("rest-partner", data=known, partner="NARSA")]
                + [Arrival("registry", data=_request(pki_dir, i), caller="REGISTRY") for i in range(6, 9)])
    held = HeldWriter(hub)
    outcomes = held.submit_all(hub, arrivals, refused_before=1)
    print(f"a batch with an unknown correlation: transactions of {held.transactions} writes; outcomes "
          f"{[type(o).__name__ for o in outcomes]}")
    assert isinstance(outcomes[4], UnknownCorrelation) and "never sent to NARSA" in str(outcomes[4])
    assert all(not isinstance(o, Exception) and not o.duplicate for i, o in enumerate(outcomes) if i != 4), outcomes
    assert held.transactions == [1, len(arrivals) - 1], "refused before the batch, which the others share"
    stored = _stored(hub)
    assert len(stored) == 1 + 7 + 1
    answers = {message_id: counts for message_id, counts in stored.items() if not message_id.startswith("REGISTRY-")}
    assert len(answers) == 1, "the unknown answer wrote nothing"
    [(deliveries, _events)] = answers.values()
    with hub.sessions() as session:
        kinds = session.scalars(select(Event.kind).join(Message, Event.message_pk == Message.id)
                                .where(Message.sender == "NARSA").order_by(Event.id)).all()
    assert kinds == [timeline.RECEIVED, timeline.VALIDATED, timeline.VERIFIED, timeline.MAPPED_IN, timeline.CORRELATED,
                     timeline.ACCEPTED] + [timeline.QUEUED] * deliveries
    _evidence_seals(hub)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("kills", [1, None], ids=["connection-killed-once", "database-away"])
def test_a_connection_killed_during_a_batch_leaves_nothing_half_written(hub, pki_dir, database_url, kills):
    """The batch's connection is terminated (pg_terminate_backend) after its messages and deliveries are
    inserted, before their events: the transaction is lost whole. Killed once, each intake is then written
    on its own and accepted once; killed at every try (the database away), every caller learns it at once
    and nothing remains."""
    admin_url = hub.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    killed = []

    def kill_before_events(_connection, cursor, statement, _parameters, _context, _many):
        if statement.startswith("INSERT INTO events") and (kills is None or len(killed) < kills):
            pid = cursor.connection.info.backend_pid
            with psycopg.connect(admin_url.split("?")[0], autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)

    event.listen(hub.engine, "before_cursor_execute", kill_before_events)
    held = HeldWriter(hub)
    outcomes = held.submit_all(hub, [Arrival("registry", data=_request(pki_dir, i), caller="REGISTRY")
                                     for i in range(1, 9)])
    event.remove(hub.engine, "before_cursor_execute", kill_before_events)
    print(f"connections killed {len(killed)} time(s): transactions of {held.transactions} writes; outcomes "
          f"{[type(o).__name__ for o in outcomes]}")
    if kills is None:  # the batch, then one alone: its connection lost too, the others are told at once
        assert held.transactions == [1, 8, 1]
        assert all(isinstance(o, OperationalError) for o in outcomes), outcomes
        assert _stored(hub) == {}
        return
    assert held.transactions == [1, 8] + [1] * 8  # the batch lost, then each on its own (a new connection)
    assert all(not isinstance(o, Exception) and not o.duplicate for o in outcomes), outcomes
    assert _stored(hub) == {f"REGISTRY-LIC-2026-{i:06d}": (1, EVENTS_OF_A_REQUEST) for i in range(1, 9)}
    _evidence_seals(hub)

"""Group commit (hub/store/group_commit.py): waiting writes share one transaction, each caller answered after
the commit; a write that fails does not take the others down with it. Against the real database."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from hub.store.db import utcnow
from hub.errors import InputError
from hub.store.group_commit import GATHER, GroupCommitter, _Item
from hub.store.models import InboundFile
from hub.intake.door import Arrival
from support import licence_request

pytestmark = pytest.mark.both_databases  # storage is the subject


REFUSED = "refused"  # a name the writer refuses before writing anything


def _files(connection, names):
    """A batch writer: an inbound file's row per name, the name as its outcome."""
    outcomes = []
    for name in names:
        if name == REFUSED:
            outcomes.append(InputError("refused before writing anything"))
            continue
        connection.execute(insert(InboundFile.__table__), {
            "partner": "CDG", "name": name, "digest": "0" * 64, "outcome": "ACCEPTED", "processed_at": utcnow()})
        outcomes.append(name)
    return outcomes


def _held(started: threading.Event, gate: threading.Event):
    """A batch writer that keeps the committer's thread busy until `gate` is set."""
    def hold(connection, items):
        started.set()
        gate.wait(10)
        return ["held"] * len(items)
    return hold


def test_waiting_writes_share_one_commit_and_a_failing_write_fails_alone(hub):
    committer = GroupCommitter(hub.engine)
    transactions = []
    original = committer._transaction
    committer._transaction = lambda batch: transactions.append(len(batch)) or original(batch)
    started, gate = threading.Event(), threading.Event()
    with ThreadPoolExecutor(12) as pool:
        # the writer kept busy until every other write is queued behind it
        first = pool.submit(committer.store, _held(started, gate), None)
        assert started.wait(10)
        writes = [f"f{i}" for i in range(8)] + [REFUSED, "f3"]  # f3 again: a unique violation
        futures = [pool.submit(committer.store, _files, name) for name in writes]
        threading.Event().wait(0.5)
        gate.set()
        assert first.result(10) == "held"
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(10))
            except (InputError, IntegrityError) as exc:
                outcomes.append(type(exc).__name__)
    committer.close()

    print(f"10 writes queued behind a held one: transactions of {transactions} writes; outcomes {outcomes}")
    assert outcomes[:8] == [f"f{i}" for i in range(8)]
    assert outcomes[8:] == ["InputError", "IntegrityError"]
    with hub.sessions() as session:
        names = sorted(session.scalars(select(InboundFile.name)))
    assert names == sorted(f"f{i}" for i in range(8)), "every good write committed once, the faulty one not at all"
    # held alone, then the ten together (rolled back by the violation), then each again on its own
    assert transactions == [1, len(writes)] + [1] * len(writes)


def test_good_writes_queued_together_commit_once(hub):
    committer = GroupCommitter(hub.engine)
    commits = []
    event.listen(hub.engine, "commit", lambda _connection: commits.append(1))
    started, gate = threading.Event(), threading.Event()
    with ThreadPoolExecutor(10) as pool:
        first = pool.submit(committer.store, _held(started, gate), None)
        assert started.wait(10)
        futures = [pool.submit(committer.store, _files, f"g{i}") for i in range(8)]
        threading.Event().wait(0.5)
        commits.clear()
        gate.set()
        first.result(10)
        assert sorted(f.result(10) for f in futures) == [f"g{i}" for i in range(8)]
    committer.close()
    print(f"8 writes queued behind a held one: {len(commits)} commit(s) after it")
    assert len(commits) <= 2  # the held write's own (empty) transaction, and one for the eight


def test_a_lone_write_from_a_thread_is_committed_by_that_thread(hub):
    """Nothing being committed and nothing waiting: no hand-over to the writer thread and back."""
    committer = GroupCommitter(hub.engine)
    writing_threads = []

    def recording(connection, names):
        writing_threads.append(threading.current_thread())
        return _files(connection, names)

    assert committer.store(recording, "alone") == "alone"
    with pytest.raises(InputError):
        committer.store(recording, REFUSED)
    assert writing_threads == [threading.current_thread()] * 2
    with hub.sessions() as session:
        assert list(session.scalars(select(InboundFile.name))) == ["alone"]
    committer.close()


def _recording(batches: list, threads: list | None = None):
    """`_files`, noting each batch's names (and the thread that wrote it)."""
    def write(connection, names):
        batches.append(sorted(names))
        if threads is not None:
            threads.append(threading.current_thread())
        return _files(connection, names)
    return write


def test_with_a_linger_writes_wait_for_company_and_commit_together(hub):
    """Each write arriving alone (a delivery worker's outcome after each send) waits for others (GATHER) to share
    its commit."""
    committer = GroupCommitter(hub.engine, linger=5)  # long: only the batch filling up can commit it in time
    batches: list = []
    write = _recording(batches)
    with ThreadPoolExecutor(GATHER) as pool:
        futures = []
        for i in range(GATHER):
            futures.append(pool.submit(committer.store, write, f"p{i}"))
            threading.Event().wait(0.05)  # each arrives on its own: none finds another waiting
        assert sorted(f.result(4) for f in futures) == [f"p{i}" for i in range(GATHER)]
    committer.close()
    assert batches == [[f"p{i}" for i in range(GATHER)]]


def test_with_a_linger_a_lone_write_is_committed_by_the_writer_once_the_linger_is_over(hub):
    committer = GroupCommitter(hub.engine, linger=0.3)
    batches, threads = [], []
    started = time.monotonic()
    assert committer.store(_recording(batches, threads), "lone") == "lone"
    waited = time.monotonic() - started
    committer.close()
    assert 0.25 <= waited < 3, waited
    assert batches == [["lone"]] and threads[0] is not threading.current_thread()


def test_concurrent_intakes_are_each_stored_once_with_their_own_answer(hub, pki_dir):
    hub.committer.close()
    hub.committer = GroupCommitter(hub.engine)
    requests = [licence_request(pki_dir, reference=f"LIC-2026-{i:06d}", number=f"12/{i:06d}") for i in range(1, 21)]
    conflicting = licence_request(pki_dir, reference="LIC-2026-000001", number="99/999999")  # same id, other bytes
    inputs = requests + [requests[1], conflicting]

    def submit(data):
        try:
            receipt = hub.receive(Arrival("registry", data=data, caller="REGISTRY"))
            return "duplicate" if receipt.duplicate else "accepted"
        except InputError as exc:
            return exc.status

    barrier = threading.Barrier(len(inputs))

    def together(data):
        barrier.wait(10)
        return submit(data)

    with ThreadPoolExecutor(len(inputs)) as pool:
        outcomes = list(pool.map(together, inputs))
    print(f"{len(inputs)} concurrent intakes: {outcomes.count('accepted')} accepted, "
          f"{outcomes.count('duplicate')} duplicate, {outcomes.count(409)} conflicts")
    # the first copy of LIC-2026-000002 and its repeat race: one is accepted, the other is its duplicate;
    # LIC-2026-000001 and its conflicting copy race too: one is accepted, the other refused with 409
    assert outcomes.count("accepted") == 20 and outcomes.count("duplicate") == 1 and outcomes.count(409) == 1
    with hub.sessions() as session:
        from hub.store.models import Message
        assert session.scalar(select(func.count()).select_from(Message)) == 20


def test_a_caller_that_gave_up_is_left_out_and_the_others_are_answered(hub):
    """A request cancelled while it awaited its commit (hub/concurrency.py) cancels its future: the writer
    skips it and answers the rest of the batch, and keeps running for the next ones."""
    committer = GroupCommitter(hub.engine)
    gave_up, kept = _Item(_files, "gave-up.xml"), _Item(_files, "kept.xml")
    assert gave_up.future.cancel()
    committer._commit([gave_up, kept])
    assert kept.future.result(5) is not None and gave_up.future.cancelled()
    with hub.sessions() as session:
        names = set(session.scalars(select(InboundFile.name)))
    assert "kept.xml" in names and "gave-up.xml" not in names
    assert committer.store(_files, "after.xml") == "after.xml"  # the writer thread goes on
    committer.close()

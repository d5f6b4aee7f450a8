"""The SQLite write lock is taken as soon as another process lets it go (hub/store/db.py
`begin_immediate_promptly`): SQLite's own busy handler sleeps up to 100 ms between looks, which made the
hub's processes wait tens of milliseconds for a lock that was free. Within one process, writers queue for it
on a gate handed over at each commit (`WriterConnection`) instead of looking again and again. Real SQLite
files, two connections."""
from __future__ import annotations

import sqlite3
import statistics
import threading
import time

from hub.store.db import SQLITE_BUSY_TIMEOUT_MS, begin_immediate_promptly, make_engine


def connect(path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return connection


def test_the_write_lock_is_taken_within_milliseconds_of_its_release(tmp_path):
    path = tmp_path / "hub.sqlite"
    holder, waiter = connect(path), connect(path)
    lags = []
    for _ in range(3):
        holder.execute("BEGIN IMMEDIATE")
        released = []

        def release():
            time.sleep(0.24)  # SQLite's own handler looks at 228 ms, then sleeps 100 ms: it would take it at 328
            released.append(time.monotonic())
            holder.execute("COMMIT")
        threading.Thread(target=release).start()
        assert begin_immediate_promptly(waiter, within=5)
        lags.append(time.monotonic() - released[0])
        waiter.execute("COMMIT")
    assert statistics.median(lags) < 0.025, lags
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == SQLITE_BUSY_TIMEOUT_MS


def test_a_lock_held_on_is_reported_after_the_prompt_wait_and_the_busy_timeout_is_back(tmp_path):
    path = tmp_path / "hub.sqlite"
    holder, waiter = connect(path), connect(path)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert not begin_immediate_promptly(waiter, within=0.2)
    assert 0.2 <= time.monotonic() - started < 1
    assert not waiter.in_transaction  # nothing begun: the caller waits the usual way
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == SQLITE_BUSY_TIMEOUT_MS
    holder.execute("COMMIT")


def test_the_engine_writes_from_two_threads_without_losing_a_row(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counted (n INTEGER)")

    def write(start: int) -> None:
        for n in range(start, start + 200):
            with engine.begin() as connection:
                connection.exec_driver_sql("INSERT INTO counted VALUES (?)", (n,))
    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*), count(DISTINCT n) FROM counted").one() == (400, 400)


def begin_in_thread(engine, statements: list[str]) -> tuple[threading.Thread, list]:
    """A writer beginning on another thread; records the SQL its connection runs and when it began."""
    began: list = []
    connection = engine.connect()
    connection.connection.dbapi_connection.set_trace_callback(statements.append)

    def begin():
        transaction = connection.begin()
        began.append(time.monotonic())
        transaction.commit()
        connection.close()
    thread = threading.Thread(target=begin)
    thread.start()
    return thread, began


def test_writers_of_one_process_wait_their_turn_instead_of_looking_again_and_again(tmp_path):
    path = tmp_path / "hub.sqlite"
    first, second = make_engine(f"sqlite:///{path}"), make_engine(f"sqlite:///{path}")  # one gate per file
    for holder_engine, waiter_engine in ((first, first), (first, second)):
        statements: list[str] = []
        with holder_engine.connect() as holder:
            holder.begin()
            waiter, began = begin_in_thread(waiter_engine, statements)
            time.sleep(0.3)
            assert not began  # still waiting
            released = time.monotonic()
            holder.commit()
        waiter.join(5)
        assert began and began[0] - released < 0.05
        # the waiter looked for SQLite's lock once, when its turn came (without the gate: a look every ms or two)
        assert statements.count("BEGIN IMMEDIATE") == 1, statements


def test_a_rollback_or_a_closed_connection_hands_the_turn_over(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    for end in ("rollback", "close"):
        holder = engine.connect()
        holder.begin()
        waiter, began = begin_in_thread(engine, [])
        time.sleep(0.1)
        assert not began
        if end == "rollback":
            holder.rollback()
            holder.close()
        else:
            holder.connection.dbapi_connection.close()  # a connection lost mid-transaction
            holder.invalidate()
        waiter.join(5)
        assert began, f"the second writer still waits after the first's {end}"
    with engine.begin() as connection:  # and the gate is free again
        connection.exec_driver_sql("SELECT 1")


def test_a_writer_queued_behind_one_that_waits_in_vain_fails_within_its_own_busy_timeout(tmp_path, monkeypatch):
    """Another process holds the file (a backup tool): every writer of the hub's process fails after the busy
    timeout from its own start, the wait for the gate included, not one busy timeout after the writer before it."""
    from sqlalchemy.exc import OperationalError
    from hub.store import db
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 1500)
    monkeypatch.setattr(db, "PROMPT_WAIT_SECONDS", 0.2)
    path = tmp_path / "hub.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    other_process = connect(path)
    other_process.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[str, float]] = []

    def write():
        started = time.monotonic()
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            outcomes.append(("written", time.monotonic() - started))
        except OperationalError as exc:
            outcomes.append((str(exc.orig), time.monotonic() - started))
    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(10)
    other_process.execute("ROLLBACK")
    assert [what for what, _ in outcomes] == ["database is locked"] * 3, outcomes
    assert max(seconds for _, seconds in outcomes) < 1.5 + 0.4, outcomes
    with engine.begin() as connection:  # the lock free again: the busy timeout is back and writing works
        connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1500

"""Database engines and sessions.

SQLite (the default, a file under `var/`) runs in WAL mode with a busy timeout and foreign keys on,
and every writing transaction starts with `BEGIN IMMEDIATE`: one writer at a time, no lock upgrades
that fail half-way; read sessions begin deferred and never wait for the writer. The writers of one
process queue for that lock on a gate of their own (`WriterConnection`), handed over at each commit.
PostgreSQL is used when `HUB_DATABASE_URL` names one (psycopg 3 driver).
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, create_engine, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator


READ_ONLY = "hub_read_only"  # an execution option: this connection's transactions only read


class Base(DeclarativeBase):
    pass


# Primary keys: 64-bit, but INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid (autoincrement)
Id = BigInteger().with_variant(Integer, "sqlite")


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        gate = _writer_gate(parsed.database)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False,
                                                  "factory": WriterConnection}, pool_size=8, max_overflow=8)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):
            # Reads (`make_read_sessionmaker`) begin deferred: in WAL mode they neither wait for nor block the writer.
            if connection.get_execution_options().get(READ_ONLY, False):
                connection.exec_driver_sql("BEGIN")
            else:
                dbapi_connection = connection.connection.dbapi_connection
                started = time.monotonic()
                dbapi_connection.queue_for_writing(gate)
                try:
                    _begin_immediate(connection, dbapi_connection, started=started)
                except BaseException:
                    dbapi_connection.hand_over()
                    raise

        return engine
    # A schema of its own can be given in the URL: ?options=-csearch_path%3Dname (the tests do).
    # A database that vanishes without refusing (a partition) is noticed within seconds, not minutes: a
    # short connect timeout, and TCP keepalives on idle connections, so requests answer 503 rather than hang.
    engine = create_engine(url, connect_args={"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                                              "keepalives_interval": 5, "keepalives_count": 3},
                           pool_size=10, max_overflow=10)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """A pooled connection that has waited in the pool more than a second is pinged before it is handed out,
    and replaced if the database no longer answers on it (after a restart, a failover, a cut): the first
    request after the outage then succeeds. One used within the last second is handed out as it is: it
    answered then, and pinging it (SQLAlchemy's `pool_pre_ping`) was a round trip before every transaction,
    five or six per message. A connection lost meanwhile fails its statement like one lost mid-transaction:
    the pool is emptied and the caller answered 503 (hub/api/problems.py)."""

    @event.listens_for(engine, "checkin")
    def _note_idle(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return  # new, or used a moment ago
        record.info["idle_since"] = None
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:  # the pool replaces this connection and tries again
            raise exc.DisconnectionError(f"the database did not answer on a pooled connection: {error}") from error


PROMPT_WAIT_SECONDS = 1.0          # how long `begin_immediate_promptly` looks again and again for the write lock
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _begin_immediate(connection, dbapi_connection, *, started: float) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock at most the busy timeout since `started` in all (the wait for
    this process's gate included): a writer queued behind one that waited in vain fails when its own time is
    up, not a busy timeout later. SQLite's error is raised as usual (the callers answer 503)."""
    budget = SQLITE_BUSY_TIMEOUT_MS / 1000 - (time.monotonic() - started)
    if begin_immediate_promptly(dbapi_connection, within=max(0.0, min(PROMPT_WAIT_SECONDS, budget))):
        return
    left_ms = max(0, int((SQLITE_BUSY_TIMEOUT_MS / 1000 - (time.monotonic() - started)) * 1000))
    dbapi_connection.execute(f"PRAGMA busy_timeout={left_ms}")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # still locked: wait as SQLite does, errors as usual
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def begin_immediate_promptly(dbapi_connection, *, within: float = PROMPT_WAIT_SECONDS) -> bool:
    """BEGIN IMMEDIATE on an SQLite connection, taken as soon as the write lock is free; False when it was
    still held by another connection after `within` seconds (nothing begun: the caller then waits the usual
    way, the busy timeout).

    SQLite's own wait for a lock another process holds (its busy handler) sleeps 1, 2, 5, 10, 15, 20, 25, 50
    and then 100 ms between looks: with the hub's processes each committing every few milliseconds, a
    transaction waited tens of milliseconds (p99 over 100 ms, seconds in all per second of load) for a lock
    that had been free most of that time. Looking again every fraction of a millisecond instead (up to 2 ms
    apart) costs a few microseconds a look."""
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + within
        pause = 0.0001
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    return False
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


class WriterConnection(sqlite3.Connection):
    """An SQLite connection whose writing transactions queue, within this process, on the database file's
    gate (a lock) before they take SQLite's write lock, and hand the gate over when they end.

    Without it, the threads of one process that want to write at once (a delivery process's senders, its
    dispatcher, its group committer) all looked for SQLite's lock again and again (`begin_immediate_promptly`):
    three failed looks per transaction, each a raised error, a sleep and a wake-up, and the lock free meanwhile
    until the next look. Queued on the gate, a writer is woken once, when the one before it ends. Writers of
    other processes still meet at SQLite's lock, as before; the gate only orders this process's own, and
    SQLite's lock still decides. The wait for the gate counts against the busy timeout (`_begin_immediate`): a
    writer that had to wait it all for the gate goes on without it, and SQLite refuses it at once if the lock
    is still held, as it would have after the busy timeout."""
    gate: threading.Lock | None = None

    def queue_for_writing(self, gate: threading.Lock | None) -> None:
        if gate is not None and self.gate is None and gate.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            self.gate = gate

    def hand_over(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.hand_over()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.hand_over()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.hand_over()


_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


def _writer_gate(database: str | None) -> threading.Lock | None:
    """The process's one gate for writers of this database file (several engines on one file share it); None
    for an in-memory database, which each connection has to itself."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    key = str(Path(database).resolve())
    with _gates_lock:
        return _gates.setdefault(key, threading.Lock())


def _locked(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(exc)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def read_only(engine: Engine, *, transaction: bool = False) -> Engine:
    """The same engine (and pool) for reads only: on SQLite its transactions begin deferred instead of
    taking the write lock; on PostgreSQL each statement runs on its own (autocommit), as it would see the same
    rows in a READ COMMITTED transaction, unless `transaction` (a server-side cursor, `yield_per`, needs one).

    Why no transaction on PostgreSQL: a read's transaction ends in a ROLLBACK, and psycopg then forgets every
    statement it had prepared on that connection, so the next writer on it parsed and planned its statements
    again (planning was 40 % of the database's CPU per statement in the SOAP benchmark). A BEGIN and a ROLLBACK
    round trip are saved too. Nothing may be written through these connections: it would not be rolled back."""
    if engine.dialect.name == "postgresql" and not transaction:
        return engine.execution_options(**{READ_ONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READ_ONLY: True})


def make_read_sessionmaker(engine: Engine, *, transaction: bool = False) -> sessionmaker:
    """Sessions for reads only (searches, the dispatcher's look for due work), over `read_only(engine)`;
    `transaction` for reads that stream their rows through a server-side cursor (`yield_per`)."""
    return sessionmaker(read_only(engine, transaction=transaction), expire_on_commit=False)


def alembic_config(connection, metadata: Sequence[MetaData] = ()):
    """Alembic's configuration for the hub's migrations on `connection`; `metadata`: the apps' tables,
    compared with the engine's own by autogenerate (the engine imports no app to find them)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = [Base.metadata, *metadata]
    return config


def migrate(engine: Engine, *, metadata: Sequence[MetaData] = ()) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command

    with engine.connect() as connection:
        command.upgrade(alembic_config(connection, metadata), "head")
        connection.commit()

"""Leadership: which of several `hub serve` processes on one database runs the scheduled jobs.

Delivery workers and the HTTP API run in every process (claims use `FOR UPDATE SKIP LOCKED` and
leases, so processes share the outbox safely). Scheduled jobs -- resubmitting stalled cases, polling
partners, registry batches, the evidence sealer, the retention purge -- are meant to run once per
schedule, so they run only in the leader.

PostgreSQL: the leader holds a session-level advisory lock (`pg_try_advisory_lock`) on a dedicated
connection for as long as it leads. When the process dies, its connection closes and PostgreSQL
releases the lock at once; another process takes it at its next try. The key is derived from the
database and schema, so hubs on different schemas of one database do not compete. The connection is
checked every HUB_LEADER_RETRY_SECONDS; if it is lost, so is leadership, at once (the lock went
with it). Its `application_name` is `hub-leader <host>:<pid>` while it leads, which is how
`pg_stat_activity` shows who leads.

SQLite: several processes can share one database file (WAL mode). The leader holds an exclusive
`flock` on `<database>.leader.lock` next to the file (e.g. `var/hub.leader.lock`), released by the
operating system when the process dies; the file names the holder (`<host>:<pid>`).

A follower tries again every HUB_LEADER_RETRY_SECONDS (default 2).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from prometheus_client import Gauge
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hub.store.db import normalise_url
from hub.errors import first_line

log = logging.getLogger("hub.cluster.leader")

LEADER = Gauge("hub_leader", "1 while this process is the leader (runs the scheduled jobs), else 0")


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_key(database: str, schema: str, purpose: str = "leader") -> int:
    """A signed 64-bit advisory lock key of its own per purpose, database and schema."""
    digest = hashlib.blake2b(f"hub-{purpose}:{database}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLock:
    """A session-level advisory lock held on a connection of its own (never a pooled one: returning
    it to a pool would hand the lock to whatever borrows the connection next)."""

    def __init__(self, database_url: str, *, check_seconds: float):
        # TCP keepalives and a user timeout bound how long a dead network keeps us believing we lead.
        timeout_ms = int(max(5.0, 3 * check_seconds) * 1000)
        self.engine = create_engine(normalise_url(database_url), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                    connect_args={"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 5,
                                                  "keepalives_interval": 2, "keepalives_count": 3,
                                                  "tcp_user_timeout": timeout_ms,
                                                  "application_name": f"hub-follower {process_name()}"})
        self.connection = None
        self.key: int | None = None
        self.where = "PostgreSQL advisory lock"

    def _connect(self):
        if self.connection is None:
            self.connection = self.engine.connect()
            database, schema = self.connection.execute(text("SELECT current_database(), current_schema()")).one()
            self.key = lock_key(database, schema)
            self.where = f"PostgreSQL advisory lock {self.key} ({database}, schema {schema})"
        return self.connection

    def try_acquire(self) -> bool:
        try:
            connection = self._connect()
            held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            if held:
                connection.execute(text("SELECT set_config('application_name', :name, false)"),
                                   {"name": f"hub-leader {process_name()}"})
            return bool(held)
        except Exception:
            self._drop()
            raise

    def alive(self) -> bool:
        """True while the connection holding the lock answers (the lock lives exactly as long)."""
        try:
            self.connection.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            log.warning("the connection holding the leader lock failed: %s", first_line(exc))
            self._drop()
            return False

    def release(self) -> None:
        """Closing the session releases the lock (an explicit unlock first, in case a pooler keeps it)."""
        if self.connection is not None:
            try:
                self.connection.execute(text("SELECT pg_advisory_unlock_all()"))
            except Exception:
                pass
        self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.invalidate()
                self.connection.close()
            except Exception:
                pass
            self.connection = None

    def close(self) -> None:
        self.release()
        self.engine.dispose()


class FileLock:
    """An exclusive `flock` on a file next to the SQLite database; the OS drops it with the process."""

    def __init__(self, path: Path):
        self.path = path
        self.where = f"lock file {path}"
        self.handle = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{process_name()}\n")  # who leads, for an operator's `cat`
        handle.flush()
        self.handle = handle
        return True

    def alive(self) -> bool:
        return self.handle is not None and not self.handle.closed

    def release(self) -> None:
        if self.handle is not None:
            try:
                self.handle.seek(0)
                self.handle.truncate()
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            finally:
                self.handle.close()
                self.handle = None

    def close(self) -> None:
        self.release()


class AlwaysLeader:
    """An in-memory SQLite database belongs to one process: it always leads."""

    where = "in-memory database (one process)"

    def try_acquire(self) -> bool:
        return True

    def alive(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _sqlite_file(url) -> Path | None:
    return None if not url.database or url.database == ":memory:" else Path(url.database).resolve()


@contextmanager
def startup_lock(database_url: str) -> Iterator[None]:
    """Held while a process migrates the schema and loads reference data, so that processes started
    together do not race (two migrations creating the same table): the others wait their turn, then
    find the work done. PostgreSQL: a blocking advisory lock; SQLite: a blocking flock."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "postgresql":
        engine = create_engine(normalise_url(database_url), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                               connect_args={"connect_timeout": 10, "application_name": f"hub-startup {process_name()}"})
        try:
            with engine.connect() as connection:
                database, schema = connection.execute(text("SELECT current_database(), current_schema()")).one()
                connection.execute(text("SELECT pg_advisory_lock(:key)"),
                                   {"key": lock_key(database, schema, "startup")})
                yield  # closing the connection releases the lock, whatever happened meanwhile
        finally:
            engine.dispose()
        return
    database = _sqlite_file(url) if url.get_backend_name() == "sqlite" else None
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.stem}.startup.lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        yield


def lock_for(database_url: str, *, check_seconds: float):
    """The leader lock that fits the database: an advisory lock on PostgreSQL, a lock file on SQLite."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "postgresql":
        return PostgresLock(database_url, check_seconds=check_seconds)
    if url.get_backend_name() == "sqlite":
        database = _sqlite_file(url)
        if database is None:
            return AlwaysLeader()
        return FileLock(database.with_name(f"{database.stem}.leader.lock"))
    raise ValueError(f"no leader lock for a {url.get_backend_name()} database ({database_url!r}): "
                     "the hub runs on SQLite or PostgreSQL")


def current_leader(database_url: str) -> str | None:
    """`<host>:<pid>` of the process that leads on this database, or None when none does (for `hub leader`)."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "postgresql":
        engine = create_engine(normalise_url(database_url), poolclass=NullPool, connect_args={"connect_timeout": 10})
        try:
            with engine.connect() as connection:
                database, schema = connection.execute(text("SELECT current_database(), current_schema()")).one()
                key = lock_key(database, schema)
                # a bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits)
                name = connection.execute(text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid::bigint = :high AND l.objid::bigint = :low"),
                    {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalar()
        finally:
            engine.dispose()
        return None if name is None else name.removeprefix("hub-leader ") or "unknown process"
    database = _sqlite_file(url) if url.get_backend_name() == "sqlite" else None
    if database is None:
        return None
    path = database.with_name(f"{database.stem}.leader.lock")
    if not path.exists():
        return None
    with open(path, "r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown process"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None  # nobody holds it


class Leadership:
    """Tries to lead, keeps checking while it leads, and calls `on_gain` / `on_loss` as that changes.

    `start` makes the first attempt synchronously (so `hub serve` can say at once whether it leads),
    then a daemon thread retries every `retry_seconds` while following and checks the lock's
    connection as often while leading."""

    def __init__(self, database_url: str, *, retry_seconds: float, on_gain: Callable[[], None],
                 on_loss: Callable[[], None], lock=None):
        if retry_seconds <= 0:
            raise ValueError(f"HUB_LEADER_RETRY_SECONDS must be more than 0, not {retry_seconds}")
        self.retry_seconds = retry_seconds
        self.lock = lock or lock_for(database_url, check_seconds=retry_seconds)
        self.on_gain, self.on_loss = on_gain, on_loss
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transition = threading.Lock()
        self._failing = False  # the last attempt could not reach the database (logged once per outage)

    @property
    def where(self) -> str:
        return self.lock.where

    def start(self) -> bool:
        self._step()
        if not self.is_leader:
            log.info("following: another process leads (%s); trying again every %s s", self.where,
                     self.retry_seconds)
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()
        return self.is_leader

    def _run(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            self._step()

    def _step(self) -> None:
        with self._transition:
            if self._stop.is_set():
                return
            if self.is_leader:
                if not self.lock.alive():
                    self._lose("the connection holding the lock was lost")
                return
            try:
                acquired = self.lock.try_acquire()
            except Exception as exc:  # the database away for a moment: a follower simply tries again
                first = first_line(exc)
                (log.debug if self._failing else log.warning)(
                    "could not try for leadership (%s); trying again every %s s", first, self.retry_seconds)
                self._failing = True
                return
            self._failing = False
            if acquired:
                self.is_leader = True
                LEADER.set(1)
                log.info("became leader (%s, process %s): running the scheduled jobs", self.where, process_name())
                try:
                    self.on_gain()
                except Exception:
                    log.exception("starting the scheduled jobs after becoming leader failed; giving leadership up")
                    self._lose("the scheduled jobs could not start")

    def _lose(self, why: str) -> None:
        self.is_leader = False
        LEADER.set(0)
        log.warning("lost leadership (%s): scheduled jobs stopped in process %s", why, process_name())
        try:
            self.on_loss()
        finally:
            self.lock.release()

    def stop(self) -> None:
        """Stops trying; a leader stops its jobs and releases the lock so another process takes over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._transition:
            if self.is_leader:
                self.is_leader = False
                LEADER.set(0)
                log.info("leadership released (process %s stopping)", process_name())
                try:
                    self.on_loss()
                except Exception:
                    log.exception("stopping the scheduled jobs failed")
            self.lock.close()

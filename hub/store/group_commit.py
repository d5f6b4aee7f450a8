"""Group commit: many intakes' writes in one transaction, each caller answered after that commit.

Every accepted message must be durable before its receipt goes out, so each intake used to be a
transaction of its own: a BEGIN IMMEDIATE that queues for SQLite's single writer (or a PostgreSQL
commit that waits for its WAL flush), a few inserts, a commit. Under load most of an intake's time
was spent queueing for that lock, and the lock was held across GIL switches to threads doing
cryptography. Here one writer thread takes whatever writes are waiting, runs them in one
transaction and commits once; the callers, blocked meanwhile, get their results only after the
commit. A write that fails alone (an InputError such as an unknown correlation) is answered with
its exception and the others go on; a database error (e.g. a unique violation: a duplicate message
id) rolls the batch back and its writes are run again one transaction each, so that exactly the
faulty one fails and the others still commit.

Grouping pays where writers queue for one lock: SQLite. PostgreSQL runs concurrent transactions side
by side and already groups their WAL flushes; measured with 16 concurrent intakes, routing them
through one writer thread there made intake slower (one connection doing every round trip), so with
`grouped=False` each write is its own transaction in the caller's thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError

from hub.concurrency import inline, wait_for
from hub.errors import HubError

log = logging.getLogger("hub.store.group_commit")
T = TypeVar("T")
_STOP = object()
ALONE_THREADS = 8  # ungrouped (PostgreSQL) transactions of intakes on the event loop, side by side


class GroupCommitter:
    def __init__(self, sessions, *, grouped: bool = True, max_batch: int = 64):
        self.sessions, self.grouped, self.max_batch = sessions, grouped, max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # ungrouped writes from the event loop (`run`)

    def run(self, write: Callable[..., T]) -> T:
        """Run `write(session)` in the next group transaction; returns its result once committed."""
        if not self.grouped:
            if inline():  # on the event loop: the transaction runs on a thread, the loop serves others meanwhile
                return wait_for(self._alone_pool().submit(self._alone, write))
            return self._alone(write)
        future: Future = Future()
        self._ensure_started()
        self._queue.put((write, future))
        return wait_for(future)  # on the event loop (hub/concurrency.py), the loop serves others meanwhile

    def _alone(self, write: Callable[..., T]) -> T:
        with self.sessions.begin() as session:
            return write(session)

    def _alone_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._start_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(ALONE_THREADS, thread_name_prefix="commit")
        return self._pool

    def _ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
                    self._thread.start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable, Future]]) -> None:
        if len(batch) > 1:
            try:
                outcomes = self._transaction(batch)
            except DBAPIError:  # one write broke the transaction: find it by running each on its own
                pass
            except BaseException as exc:  # the database away, or a defect: every caller learns it
                for _write, future in batch:
                    future.set_exception(exc)
                return
            else:
                for (_write, future), (ok, value) in zip(batch, outcomes):
                    future.set_result(value) if ok else future.set_exception(value)
                return
        for item in batch:
            try:
                [(ok, value)] = self._transaction([item])
            except BaseException as exc:
                item[1].set_exception(exc)
            else:
                item[1].set_result(value) if ok else item[1].set_exception(value)

    def _transaction(self, batch) -> list[tuple[bool, object]]:
        """Run the writes in one transaction. A HubError of one write is its own outcome (it raises
        before writing anything); any other error aborts the whole transaction."""
        outcomes = []
        with self.sessions.begin() as session:
            for write, _future in batch:
                try:
                    outcomes.append((True, write(session)))
                except HubError as exc:
                    outcomes.append((False, exc))
        return outcomes

"""Group commit: many intakes' writes in one transaction, each caller answered after that commit.

Every accepted message must be durable before its receipt goes out, so each intake used to be a
transaction of its own: a BEGIN IMMEDIATE that queues for SQLite's single writer (or a PostgreSQL
commit that waits for its WAL flush), a few inserts, a commit. Under load most of an intake's time
was spent queueing for that lock, and the lock was held across GIL switches to threads doing
cryptography. Here one writer thread takes whatever writes are waiting, runs them in one
transaction and commits once; the callers, blocked meanwhile, get their results only after the
commit.

    store(writer, item)   one item of a batch writer: `writer(connection, items)` writes all the items
                          waiting for it in a constant number of statements (multi-row INSERT ...
                          RETURNING, one executemany) and returns one outcome per item, in order:
                          its result, or the HubError that refuses it (a refused item writes nothing)

The writers are given a plain Connection: what they write are rows, and an ORM Session's own
begin, bookkeeping and commit cost more than a small batch's statements.

A database error (e.g. a unique violation: a duplicate message id, or the connection lost) rolls the
batch back and its items are written again one transaction each, so that exactly the faulty one
fails and the others still commit. A writer may ask for the same by raising `WriteAlone` (its items
cannot be written together this time: a row changed since it was read), or by raising the HubError that
refuses an item whose writes it cannot leave out of the transaction: written alone, the error answers that
item only, and nothing of it is kept. When one of them loses its
connection too, the database is away: the rest of the batch are answered with that error at once
(nothing of the batch remains; each caller answers 503 and its sender tries again). A batch costs the
same few round trips and one commit whatever its size, on both databases (bench/intake.py measures it).

A caller running inline on the event loop (the API's intake, hub/concurrency.py) awaits its commit
instead of blocking: the loop takes other requests in meanwhile, whose writes join the same batch.

Without a linger (below), a caller on a thread of its own (a delivery worker) that finds nothing being
committed and nothing waiting commits its item itself: handing it to the writer thread and being woken
again costs two thread switches, as much CPU as a small transaction (`python -m bench.intake --threads 1`).
Items arriving while it commits wait for the writer thread, which then takes them all in one batch.

With `linger` (seconds, HUB_COMMIT_LINGER_MS), a write may wait a little for company: every write goes
through the writer thread, which, holding fewer than `GATHER` items, waits up to `linger` after taking the
first for more to join. A commit is the dearest statement of a small batch (on PostgreSQL about 0.2 ms of the
server's CPU for its WAL flush, and a BEGIN and a COMMIT for the client), and the delivery workers, each
writing one outcome after each send, left the writer batches of one or two. Under load, batches fill at once
and nothing waits; on a nearly idle hub, a receipt goes out up to `linger` later.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy.exc import DBAPIError

from hub.concurrency import inline, wait_for
from hub.errors import HubError, WriteAlone

log = logging.getLogger("hub.store.group_commit")
_STOP = object()

GATHER = 3  # a batch this large is committed at once, whatever the linger

BatchWriter = Callable[[Any, Sequence[Any]], Sequence[Any]]  # (connection, items) -> one outcome per item


@dataclass(eq=False)
class _Item:
    """A `store` item: written together with the other items of the same batch writer."""
    writer: BatchWriter
    item: Any
    future: Future = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, engine, *, max_batch: int = 64, linger: float = 0.0):
        self.engine, self.max_batch, self.linger = engine, max_batch, linger
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._committing = threading.Lock()  # held by whoever runs a batch's transaction
        self._writer_waiting = False         # the writer thread has taken items and waits to commit them

    def store(self, writer: BatchWriter, item: Any) -> Any:
        """Have `writer` write `item` with the other items waiting for it, in the next group transaction;
        returns the item's result once committed, or raises what refused it."""
        work = _Item(writer, item)
        if (not self.linger and not inline() and not self._writer_waiting and self._queue.empty()
                and self._committing.acquire(blocking=False)):
            try:
                self._commit([work])
            finally:
                self._committing.release()
            return work.future.result()
        self._ensure_started()
        self._queue.put(work)
        return wait_for(work.future)  # on the event loop (hub/concurrency.py), the loop serves others meanwhile

    def _ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
                    self._thread.start()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._writer_waiting = True
            with self._committing:
                self._writer_waiting = False
                batch = [item]
                until = time.monotonic() + self.linger
                while len(batch) < self.max_batch:
                    try:
                        wait = until - time.monotonic() if len(batch) < GATHER else 0
                        item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._commit(batch)
                        return
                    batch.append(item)
                self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        # A caller that gave up (its request cancelled while it awaited, hub/concurrency.py) is left out: its
        # future can take no result. The others' futures are marked running, so that none can be cancelled now.
        batch = [work for work in batch if work.future.set_running_or_notify_cancel()]
        if not batch:
            return
        if len(batch) > 1:
            try:
                outcomes = self._transaction(batch)
            except (DBAPIError, WriteAlone, HubError):  # one item broke the transaction, or the connection went,
                pass                                        # or a writer refused one it could not leave out: each alone
            except BaseException as exc:  # a defect: every caller learns it
                for work in batch:
                    work.future.set_exception(exc)
                return
            else:
                for work, (ok, value) in zip(batch, outcomes):
                    work.future.set_result(value) if ok else work.future.set_exception(value)
                return
        unreachable: DBAPIError | None = None
        for work in batch:
            if unreachable is not None:  # the database away: the others learn it now, not a connect timeout each
                work.future.set_exception(unreachable)
                continue
            try:
                [(ok, value)] = self._transaction([work])
            except DBAPIError as exc:
                unreachable = exc if exc.connection_invalidated else None
                work.future.set_exception(exc)
            except BaseException as exc:
                work.future.set_exception(exc)
            else:
                work.future.set_result(value) if ok else work.future.set_exception(value)

    def _transaction(self, batch: list[_Item]) -> list[tuple[bool, object]]:
        """Write the items in one transaction; one (ok, result or exception) per item, in order. A HubError
        refusing an item is its outcome (a refused item writes nothing); any other error aborts the whole
        transaction."""
        outcomes: dict[int, tuple[bool, object]] = {}
        by_writer: dict[BatchWriter, list[tuple[int, _Item]]] = {}
        for index, work in enumerate(batch):
            by_writer.setdefault(work.writer, []).append((index, work))
        with self.engine.begin() as connection:
            for writer, items in by_writer.items():
                results = writer(connection, [work.item for _index, work in items])
                if len(results) != len(items):
                    raise RuntimeError(f"{writer!r} gave {len(results)} outcomes for {len(items)} items")
                for (index, _work), result in zip(items, results):
                    outcomes[index] = (not isinstance(result, HubError), result)
        return [outcomes[index] for index in range(len(batch))]

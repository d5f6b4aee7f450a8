"""An append-only journal of what a sandbox received and answered, made durable in groups.

A sandbox must not forget a message id it acknowledged, even after a crash: deduplication by
message id is what turns the hub's at-least-once delivery into an exactly-once effect. Two
temporary files, two fsyncs and two renames per message made that durable at a price (about half
of the sandbox's CPU under load); one append to this journal and one fdatasync do the same, and
one fdatasync covers every record appended before it started (group commit: requests in flight
together share it).

A record is   b"SBJ1" | key, received, answer lengths (3 x uint32, big-endian) | crc32 | the three
byte strings.  `records()` reads them back in order and stops at the first incomplete or damaged
record: a record is only ever acknowledged after it is synced, so a torn tail was never answered.

The sandbox keeps its per-message files (received/, acknowledged/) as the readable store; they are
written without fsync, since the journal can rebuild them. At start the journal is replayed into
those files, they are synced, and the journal starts empty again; the same when it grows too large
(`PartnerSandbox` does this, sandbox/common.py). A sandbox started with `--journal-only` writes no
such files: the journal is then its only store, replayed at start (a torn tail cut off) and never
emptied.
"""
from __future__ import annotations

import concurrent.futures
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator

from hub.concurrency import inline, wait_for

MAGIC = b"SBJ1"
HEADER = struct.Struct(">4sIIII")  # magic, key length, received length, answer length, crc32 of the three


class Journal:
    """Appends records (from any thread) and syncs them; `sync(upto)` returns once `upto` is durable."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._written = os.fstat(self._fd).st_size
        self._synced = self._written
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._waiting: list[tuple[int, concurrent.futures.Future]] = []  # inline callers awaiting a sync
        self._waiting_changed = threading.Condition()
        self._syncer: threading.Thread | None = None

    def append(self, key: str, received: bytes, answer: bytes) -> int:
        """Write one record (not yet durable); returns the offset `sync` must reach for it to be."""
        name = key.encode()
        record = HEADER.pack(MAGIC, len(name), len(received), len(answer),
                             zlib.crc32(answer, zlib.crc32(received, zlib.crc32(name)))) + name + received + answer
        with self._append_lock:
            written = os.write(self._fd, record)
            if written != len(record):  # a full disk: never acknowledge a partial record
                raise OSError(f"journal {self.path}: wrote {written} of {len(record)} bytes")
            self._written += written
            return self._written

    def sync(self, upto: int | None = None) -> None:
        """Make everything appended up to offset `upto` (default: everything so far) durable.

        A caller finding a sync in progress waits for it, and then has nothing left to do when that
        sync covered its record: concurrent requests share one fdatasync. Called inline on an event loop
        (hub/concurrency.py), the wait is awaited: the journal's syncing thread makes the sync, the loop
        serves other requests meanwhile, and their records go into the next sync, together."""
        if upto is None:
            upto = self._written
        if self._synced >= upto:
            return
        if not inline():
            self._sync(upto)
            return
        done: concurrent.futures.Future = concurrent.futures.Future()
        with self._waiting_changed:
            self._waiting.append((upto, done))
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_for_waiting, name="journal-sync", daemon=True)
                self._syncer.start()
            self._waiting_changed.notify()
        wait_for(done)

    def _sync_for_waiting(self) -> None:
        """The syncing thread: one fdatasync for every waiter gathered meanwhile, again and again."""
        while True:
            with self._waiting_changed:
                while not self._waiting:
                    self._waiting_changed.wait()
                waiting, self._waiting = self._waiting, []
            try:
                self._sync(max(upto for upto, _ in waiting))
            except OSError as exc:
                for _, done in waiting:
                    done.set_exception(exc)
            else:
                for _, done in waiting:
                    done.set_result(None)

    def _sync(self, upto: int) -> None:
        if self._synced >= upto:
            return
        with self._sync_lock:
            if self._synced >= upto:
                return
            target = self._written
            os.fdatasync(self._fd)
            self._synced = target

    @property
    def size(self) -> int:
        """Bytes appended so far."""
        return self._written

    def truncate(self) -> None:
        """Start afresh (the caller made sure every record is durable elsewhere, and none is being appended)."""
        with self._append_lock, self._sync_lock:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._written = self._synced = 0

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def records(path: Path) -> Iterator[tuple[str, bytes, bytes]]:
        """(key, received, answer) of every complete record, in the order appended."""
        for key, received, answer, _end in Journal.scan(path):
            yield key, received, answer

    @staticmethod
    def scan(path: Path) -> Iterator[tuple[str, bytes, bytes, int]]:
        """`records`, each with the offset where it ends (the last one's: the length of the journal's
        complete part)."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + HEADER.size <= len(data):
            magic, key_length, received_length, answer_length, crc = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            end = start + key_length + received_length + answer_length
            if magic != MAGIC or end > len(data):
                return
            name = data[start:start + key_length]
            received = data[start + key_length:start + key_length + received_length]
            answer = data[start + key_length + received_length:end]
            if zlib.crc32(answer, zlib.crc32(received, zlib.crc32(name))) != crc:
                return
            yield name.decode(), received, answer, end
            offset = end

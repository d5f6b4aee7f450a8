"""Waking the delivery processes when intake has stored work for them (`hub serve --delivery-processes M`).

In one process, intake wakes the delivery dispatcher through a condition (`Hub.wake_workers`), naming the
partners it queued deliveries for. When the API and delivery run in separate processes, an API process sends
a datagram naming them ("NARSA", "SANTE,DGSN"; "*" for anyone) after each commit to every delivery process of
its hub, on a Unix socket in the hub's folder (`<HUB_VAR_DIR>/run/`, readable by the hub's own
user only: no other user of the machine can listen there, or wake, or learn anything). A delivery process that
receives one wakes its dispatcher at once instead of at its next poll (HUB_POLL_INTERVAL_SECONDS). Sending
never blocks nor fails intake: a datagram to a process that is not listening (starting, restarting) is
dropped, and that process finds the work at its next poll anyway.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Callable, Iterable

from hub.concurrency import inline

ANYONE = b"*"

log = logging.getLogger("hub.cluster.wake")


MAX_SOCKET_PATH = 107  # bytes of a Unix socket's path (Linux)


def address(var_dir, slot: int) -> str | None:
    """The socket of delivery process `slot` of the hub whose folder is `var_dir`; None when that path is too
    long for a Unix socket (the delivery processes then find work at their polls; `hub serve` says so)."""
    path = str(Path(var_dir).resolve() / "run" / f"delivery-{slot}.sock")
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def private_folder(path: str) -> None:
    """The socket's folder, made if missing, readable and writable by this user only."""
    folder = Path(path).parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user: no wake-up socket there")
    folder.chmod(0o700)


class WakeSender:
    """Sends a wake-up to each delivery process; cheap (one non-blocking sendto each), never raises.

    Called from intake running inline on the API's event loop (hub/concurrency.py), the wake-ups of one turn of
    the loop go as one, sent once the turn's callbacks have run: the intakes of one group commit resume in the
    same turn, and each used to send its own datagram to every delivery process (a system call each, and a
    wake-up of the process's listener). Anywhere else a wake-up goes at once: a loop may be running in the
    thread without turning meanwhile (a synchronous caller driving one, as Playwright's API does)."""

    def __init__(self, addresses: list[str | None]):
        self.addresses = [target for target in addresses if target is not None]
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._pending: set[str] | None = set()  # the loop's turn's partners so far (None: anyone)
        self._flush_scheduled = False

    def __call__(self, partners: Iterable[str] | None = None) -> None:
        if not inline():
            self._send(partners)
            return
        if partners is None:
            self._pending = None
        elif self._pending is not None:
            self._pending.update(partners)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        partners, self._pending, self._flush_scheduled = self._pending, set(), False
        self._send(partners)

    def _send(self, partners: Iterable[str] | None) -> None:
        message = ANYONE if partners is None else ",".join(sorted(set(partners))).encode()
        for target in self.addresses:
            try:
                self._socket.sendto(message, target)
            except OSError:  # not listening now, or its queue is full (it is awake already)
                pass

    def close(self) -> None:
        self._socket.close()


class WakeListener:
    """Receives wake-ups on `name` and calls `on_wake(partners)` for each burst of them (None: anyone), on a
    thread of its own."""

    def __init__(self, path: str, on_wake: Callable[[set[str] | None], None]):
        private_folder(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            os.unlink(path)  # left by a process of this hub that was killed
        except FileNotFoundError:
            pass
        self._socket.bind(path)
        os.chmod(path, 0o600)
        self.path = path
        self.on_wake = on_wake
        self._thread = threading.Thread(target=self._run, name="delivery-wake", daemon=True)
        self._running = True

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            try:
                burst = [self._socket.recv(4096)]
                self._socket.setblocking(False)
                try:  # a burst of wake-ups is one wake-up
                    while True:
                        burst.append(self._socket.recv(4096))
                except BlockingIOError:
                    pass
                finally:
                    self._socket.setblocking(True)
            except OSError:
                if self._running:
                    log.exception("delivery wake-up socket failed; the delivery process polls instead")
                return
            if self._running:
                self.on_wake(named(burst))

    def stop(self) -> None:
        self._running = False
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def named(messages: list[bytes]) -> set[str] | None:
    """The partners a burst of wake-ups names; None when one of them is for anyone (or unreadable)."""
    partners: set[str] = set()
    for message in messages:
        if message == ANYONE or not message:
            return None
        try:
            partners.update(message.decode("ascii").split(","))
        except UnicodeDecodeError:
            return None
    return partners

"""Waking the delivery processes when intake has stored work for them (`hub serve --delivery-processes M`).

In one process, intake wakes the delivery dispatcher through a condition (`Hub.wake_workers`), naming the
partners it queued deliveries for. When the API and delivery run in separate processes, an API process sends
a datagram naming them ("NARSA", "SANTE,DGSN"; "*" for anyone) after each commit to every delivery process of
its hub, on a Linux abstract Unix socket named after the hub's database and folder (no
file to clean up; only processes on this machine, of this hub, can be reached). A delivery process that
receives one wakes its dispatcher at once instead of at its next poll (HUB_POLL_INTERVAL_SECONDS). Sending
never blocks nor fails intake: a datagram to a process that is not listening (starting, restarting) is
dropped, and that process finds the work at its next poll anyway.
"""
from __future__ import annotations

import hashlib
import logging
import socket
import threading
from typing import Callable, Iterable

ANYONE = b"*"

log = logging.getLogger("hub.cluster.wake")


def address(database_url: str, var_dir, slot: int) -> str:
    """The abstract socket name of delivery process `slot` of the hub on this database and folder."""
    digest = hashlib.sha256(f"{database_url}\0{var_dir}".encode()).hexdigest()[:24]
    return f"\0hub-delivery-{digest}-{slot}"


class WakeSender:
    """Sends a wake-up to each delivery process; cheap (one non-blocking sendto each), never raises."""

    def __init__(self, addresses: list[str]):
        self.addresses = addresses
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def __call__(self, partners: Iterable[str] | None = None) -> None:
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

    def __init__(self, name: str, on_wake: Callable[[set[str] | None], None]):
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(name)
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

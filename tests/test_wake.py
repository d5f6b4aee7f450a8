"""Wake-ups of the delivery workers: what intake names (the partners it queued deliveries for) reaches the
dispatcher, in one process through the hub's condition and across processes over the abstract Unix socket
(hub/cluster/wake.py); a wake-up for anyone (a freed slot, a resend) is never narrowed to a few partners."""
from __future__ import annotations

import os
import threading
import time
import uuid

from hub.cluster.wake import WakeListener, WakeSender, address, named


def test_a_burst_names_the_union_of_its_partners_and_anyone_wins():
    assert named([b"NARSA"]) == {"NARSA"}
    assert named([b"NARSA", b"DGSN,SANTE", b"NARSA"]) == {"NARSA", "DGSN", "SANTE"}
    assert named([b"NARSA", b"*"]) is None
    assert named([b"\xff"]) is None  # unreadable: treated as a wake-up for anyone
    assert address("sqlite:///a", "/var/a", 0) != address("sqlite:///b", "/var/a", 0) != address("sqlite:///b",
                                                                                               "/var/a", 1)


def test_wake_ups_cross_processes_over_the_socket_and_reach_no_other_hub():
    name = f"\0hub-test-{uuid.uuid4().hex}-{os.getpid()}"
    received: list = []
    arrived = threading.Event()

    def on_wake(partners):
        received.append(partners)
        arrived.set()
    listener = WakeListener(name, on_wake)
    listener.start()
    sender, stray = WakeSender([name]), WakeSender([name + "-another-hub"])
    try:
        stray(["JUSTICE"])  # nobody listens there: dropped without an error
        sender(["SANTE", "DGSN"])
        assert arrived.wait(5)
        deadline = time.monotonic() + 5
        while set().union(*[r or set() for r in received]) != {"SANTE", "DGSN"} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set().union(*received) == {"SANTE", "DGSN"}
        arrived.clear()
        sender(None)
        assert arrived.wait(5) and None in received
    finally:
        listener.stop()
        sender.close()
        stray.close()
    sender = WakeSender([name])
    sender(["NARSA"])  # the listener gone: still no error for intake
    sender.close()


def test_the_dispatcher_learns_which_partners_were_woken(hub):
    seen = hub.work_generation
    hub.wake_workers(["NARSA"])
    hub.wake_workers(["DGSN", "NARSA"])
    assert hub.wait_for_work(1, seen=seen) == {"NARSA", "DGSN"}
    seen = hub.work_generation
    hub.wake_workers(["NARSA"])
    hub.wake_workers()  # anyone: a slot freed, a resend
    assert hub.wait_for_work(1, seen=seen) is None
    started = time.monotonic()
    assert hub.wait_for_work(0.2, seen=hub.work_generation) is None  # a timeout: time to look (the poll)
    assert time.monotonic() - started >= 0.15

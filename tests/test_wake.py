"""Wake-ups of the delivery workers: what intake names (the partners it queued deliveries for) reaches the
dispatcher, in one process through the hub's condition and across processes over the abstract Unix socket
in the hub's folder (hub/cluster/wake.py), which no other user can reach; a wake-up for anyone (a freed slot,
a resend) is never narrowed to a few partners."""
from __future__ import annotations

import asyncio
import socket
import stat
import threading
import time

from hub.cluster.wake import ANYONE, WakeListener, WakeSender, address, named
from hub.concurrency import run_inline


def test_a_burst_names_the_union_of_its_partners_and_anyone_wins():
    assert named([b"NARSA"]) == {"NARSA"}
    assert named([b"NARSA", b"DGSN,SANTE", b"NARSA"]) == {"NARSA", "DGSN", "SANTE"}
    assert named([b"NARSA", b"*"]) is None
    assert named([b"\xff"]) is None  # unreadable: treated as a wake-up for anyone
    assert address("/var/lib/hub", 0) == "/var/lib/hub/run/delivery-0.sock" != address("/var/lib/hub", 1)
    assert address("/" + "x" * 120, 0) is None  # too long for a Unix socket: the delivery process polls


def test_wake_ups_cross_processes_over_the_socket_and_reach_no_other_hub(tmp_path):
    name = address(tmp_path / "var", 0)
    received: list = []
    arrived = threading.Event()

    def on_wake(partners):
        received.append(partners)
        arrived.set()
    listener = WakeListener(name, on_wake)
    listener.start()
    sender, stray = WakeSender([name]), WakeSender([address(tmp_path / "another-hub", 0), None])
    folder = tmp_path / "var" / "run"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # no other user may listen, wake or read
    assert stat.S_IMODE((folder / "delivery-0.sock").stat().st_mode) == 0o600
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
    hub.wake_workers(partner for partner in ["SANTE"])  # a generator: read once, named locally and remotely
    assert hub.wait_for_work(1, seen=seen)[1] == {"NARSA", "DGSN", "SANTE"}
    seen = hub.work_generation
    hub.wake_workers(["NARSA"])
    hub.wake_workers()  # anyone: a slot freed, a resend
    generation, woken = hub.wait_for_work(1, seen=seen)
    assert woken is None and generation == hub.work_generation
    started = time.monotonic()
    assert hub.wait_for_work(0.2, seen=generation) == (generation, None)  # a timeout: time to look (the poll)
    assert time.monotonic() - started >= 0.15


def test_intake_names_its_partners_to_the_delivery_processes_too(hub, tmp_path):
    """What an API process sends after a commit names the partners (a generator of them is read once)."""
    received = []
    arrived = threading.Event()
    listener = WakeListener(address(tmp_path, 0), lambda partners: (received.append(partners), arrived.set()))
    listener.start()
    hub.wake_elsewhere = WakeSender([address(tmp_path, 0)])
    try:
        hub.wake_workers(target for target in ["NARSA", "DGSN"])
        assert arrived.wait(5) and received == [{"NARSA", "DGSN"}]
    finally:
        listener.stop()
        hub.wake_elsewhere = None


def test_the_wake_ups_of_one_turn_of_the_event_loop_go_as_one_datagram(tmp_path):
    """The intakes of one group commit resume in the same turn of the API's loop (inline, hub/concurrency.py): one
    datagram names all their partners, sent once the turn's callbacks have run. Anywhere else (a thread of its
    own, or plain code under a running loop, as when a synchronous caller drives one) each goes at once."""
    path = str(tmp_path / "d.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    sender = WakeSender([path])

    def datagrams() -> list[bytes]:
        got = []
        while True:
            try:
                got.append(receiver.recv(4096))
            except BlockingIOError:
                return got

    async def one_turn(calls) -> list[bytes]:
        for partners in calls:
            await run_inline(sender, partners)  # as intake wakes them, inline on the loop
        before = datagrams()  # nothing sent while the turn runs
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return before + datagrams()

    async def not_inline() -> list[bytes]:
        sender(["NARSA"])
        return datagrams()

    def run(coroutine) -> list[bytes]:
        """On a loop of its own, in a thread of its own: this thread may have a loop running (the browser's)."""
        result: list = []
        thread = threading.Thread(target=lambda: result.append(asyncio.run(coroutine)))
        thread.start()
        thread.join(10)
        return result[0]

    try:
        assert run(one_turn([["NARSA"], ["SANTE", "DGSN"], ["NARSA"]])) == [b"DGSN,NARSA,SANTE"]
        assert run(one_turn([["NARSA"], None, ["DGSN"]])) == [ANYONE]
        assert run(not_inline()) == [b"NARSA"]
        sender(["NARSA"])
        sender(["DGSN"])
        assert datagrams() == [b"NARSA", b"DGSN"]
    finally:
        sender.close()
        receiver.close()

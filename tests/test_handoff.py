"""The delivery pool's job queue (hub/delivery/handoff.py): items in order, the thread idle the shortest time
served first."""
from __future__ import annotations

import threading
import time

from hub.delivery.handoff import Handoff


def wait_until(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_items_come_out_in_the_order_they_were_put():
    jobs = Handoff()
    for item in ("a", "b", None):
        jobs.put(item)
    assert jobs.qsize() == 3
    assert [jobs.get(), jobs.get(), jobs.get()] == ["a", "b", None]
    assert jobs.qsize() == 0


def test_the_thread_that_went_idle_last_takes_the_next_item():
    jobs, taken = Handoff(), {}

    def idle(name: str) -> None:
        taken[name] = jobs.get()

    threads = []
    for name in ("first idle", "second idle", "third idle"):
        threads.append(threading.Thread(target=idle, args=(name,)))
        threads[-1].start()
        wait_until(lambda: len(jobs._waiting) == len(threads))  # idle in this order
    jobs.put(1)
    wait_until(lambda: len(taken) == 1)
    jobs.put(2)
    wait_until(lambda: len(taken) == 2)
    jobs.put(3)
    for thread in threads:
        thread.join(5)
    assert taken == {"third idle": 1, "second idle": 2, "first idle": 3}
    assert jobs.qsize() == 0  # handed straight to the waiting threads

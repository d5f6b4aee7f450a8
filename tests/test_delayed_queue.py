"""The sandboxes' DelayedQueue (sandbox/delayed_queue.py): items come out when due, soonest first."""
from __future__ import annotations

import threading
import time

from sandbox.delayed_queue import DelayedQueue


def test_an_item_due_sooner_wakes_a_get_waiting_for_a_later_one():
    queue = DelayedQueue()
    queue.put("later", 30)
    got = []
    taker = threading.Thread(target=lambda: got.append(queue.get()))
    taker.start()
    time.sleep(0.2)  # the taker now waits for "later"
    queue.put("sooner", 0)
    taker.join(5)
    assert got == ["sooner"]
    queue.close()


def test_items_come_out_in_due_order_whatever_the_order_they_were_put_in():
    queue = DelayedQueue()
    for item, delay in (("b", 0.2), ("c", 0.3), ("a", 0), ("a2", 0)):
        queue.put(item, delay)
    assert [queue.get() for _ in range(4)] == ["a", "a2", "b", "c"]


def test_close_releases_a_waiting_get():
    queue = DelayedQueue()
    queue.put("never", 60)
    got = []
    taker = threading.Thread(target=lambda: got.append(queue.get()))
    taker.start()
    queue.close()
    taker.join(5)
    assert got == [None]

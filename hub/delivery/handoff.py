"""The delivery pool's job queue: items in the order they were put, handed to the thread that went idle LAST.

`queue.Queue` wakes its waiting threads oldest first, so under a light load every lane went to another of the
pool's threads in turn (112 of them with the defaults), and each thread compiles, once, the schemas and
stylesheets it uses (hub/xml/schemas.py, hub/xml/mapping.py: lxml advises keeping a stylesheet in the thread
that made it). Served newest first, the same few threads take the work while the load is light, and only as many
threads as are ever busy at once come to hold compiled copies.
"""
from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self):
        self._lock = threading.Lock()
        self._items: collections.deque[T] = collections.deque()
        self._waiting: list[list] = []  # [event, item] per idle thread, the most recent last

    def put(self, item: T) -> None:
        with self._lock:
            if self._waiting:
                waiter = self._waiting.pop()
                waiter[1] = item
                waiter[0].set()
            else:
                self._items.append(item)

    def get(self) -> T:
        """The oldest item not yet taken; waits (without a timeout) until one is put."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            waiter = [threading.Event(), None]
            self._waiting.append(waiter)
        waiter[0].wait()
        return waiter[1]

    def qsize(self) -> int:
        """Items put and not yet taken (an item put while a thread waits goes straight to it)."""
        with self._lock:
            return len(self._items)

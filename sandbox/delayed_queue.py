"""A thread-safe queue whose items become available only once their delay has passed."""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any


class DelayedQueue:
    """`put(item, delay)` now; `get()` blocks until the earliest item is due (or the queue is closed)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._order = itertools.count()  # keeps FIFO order among items due at the same time
        self._condition = threading.Condition()
        self._closed = False

    def put(self, item: Any, delay: float = 0.0) -> None:
        """Add `item`, due in `delay` seconds. A waiting `get` is woken only when the item is due before
        everything already queued: otherwise it is already set to wake for an earlier item, and waking
        it for nothing costs a thread switch per item (a NARSA sandbox queues a result per request)."""
        entry = (time.monotonic() + max(0.0, delay), next(self._order), item)
        with self._condition:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._condition.notify()

    def get(self) -> Any | None:
        """Return the next due item, or None once the queue is closed."""
        with self._condition:
            while not self._closed:
                if not self._heap:
                    self._condition.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._condition.wait(wait)
            return None

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._heap)

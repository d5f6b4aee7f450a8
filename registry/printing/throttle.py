"""The public verification's rate limit: each client address gets `limit` lookups per `window` seconds.

Codes are unguessable (registry/printing/codes.py), so this is not what keeps documents from being found by
enumeration; it keeps the public, unauthenticated endpoint cheap to expose. Counted per process, in memory, for
at most `clients` addresses at once (the oldest forgotten first): a limit for the well-behaved, not a defence
against a flood, which belongs to the reverse proxy in front of the hub.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from hub.errors import TooManyLookups


class Throttle:
    def __init__(self, limit: int = 30, window: float = 60.0, clients: int = 10_000, clock=time.monotonic):
        self.limit, self.window, self.clients, self.clock = limit, window, clients, clock
        self._seen: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Count one lookup by `client`; TooManyLookups (429, Retry-After) past the limit (not counted then)."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            self._seen[client] = times
            while len(self._seen) > self.clients:
                self._seen.popitem(last=False)
            if len(times) >= self.limit:
                raise TooManyLookups(f"at most {self.limit} verifications in {self.window:g} seconds from one "
                                     "address: try again shortly", retry_after=times[0] + self.window - now)
            times.append(now)

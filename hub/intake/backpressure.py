"""Back-pressure: intake for a partner whose outbox is full answers 429 with Retry-After, storing nothing.

When a partner cannot keep up (down for an hour, or slower than what is sent to it), its pending
deliveries pile up. Past HUB_MAX_OUTBOX_DEPTH pending deliveries for one partner (default 10,000; 0
turns the check off), a message routed to that partner is refused before anything is stored, with
`OutboxFull` (hub/errors.py): HTTP 429, `Retry-After`, and a problem+json body naming the partner, the
depth and the limit. The sender keeps the message and sends the same bytes again later; messages for
other partners are accepted as usual. Intake resumes by itself once the outbox drains below the limit.

Counting costs one grouped COUNT over the pending deliveries, made at most once a second per process
(`OutboxDepths`); intake reads the cached figures. The limit may therefore be passed by what arrives
within that second, and with several hub processes by what each accepts: it is a bound against
growing without end, not an exact quota.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from hub import metrics
from hub.concurrency import inline, run_blocking
from hub.errors import OutboxFull
from hub.store.counts import outbox_depths

log = logging.getLogger("hub.intake.backpressure")

REFRESH_SECONDS = 1.0     # pending counts are read from the database at most this often (per process)
RETRY_AFTER_SECONDS = 5   # what a refused sender is asked to wait


class OutboxDepths:
    """Pending deliveries per partner, read with one grouped COUNT at most every `refresh` seconds.

    While one thread refreshes, the others use the figures they have (no queue of identical queries)."""

    def __init__(self, sessions, *, limit: int, refresh: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.sessions, self.limit, self.refresh, self.clock = sessions, limit, refresh, clock
        self._lock = threading.Lock()
        self._depths: dict[str, int] = {}
        self._read_at: float | None = None
        self._full: set[str] = set()

    def current(self) -> dict[str, int]:
        if self._read_at is not None and self.clock() - self._read_at < self.refresh:
            return self._depths
        # Wait for a first reading unless on the event loop, where the reader may be another request of this very
        # thread (waiting there would never end): that one goes on with no figures yet, as it would without limit.
        if not self._lock.acquire(blocking=self._read_at is None and not inline()):
            return self._depths          # another thread (or request) is reading them now
        try:
            if self._read_at is None or self.clock() - self._read_at >= self.refresh:
                depths = run_blocking(self._read)  # off the event loop when intake runs on it
                self._depths, self._read_at = depths, self.clock()
                self._log_changes(depths)
        finally:
            self._lock.release()
        return self._depths

    def _read(self) -> dict[str, int]:
        with self.sessions() as session:
            return outbox_depths(session)

    def _log_changes(self, depths: dict[str, int]) -> None:
        full = {partner for partner, count in depths.items() if count >= self.limit}
        for partner in sorted(full - self._full):
            log.warning("outbox for %s full: %d pending (limit %d); messages for %s are answered 429 until it drains",
                        partner, depths[partner], self.limit, partner)
        for partner in sorted(self._full - full):
            log.warning("outbox for %s below its limit again (%d pending, limit %d); intake for %s resumes",
                        partner, depths.get(partner, 0), self.limit, partner)
        self._full = full


def check(hub, partners: Iterable[str]) -> None:
    """Raise OutboxFull when the outbox of one of `partners` (the message's targets) is at its limit."""
    limit = hub.settings.max_outbox_depth
    if limit <= 0:
        return
    depths = hub.outbox_depths.current()
    for partner in partners:
        pending = depths.get(partner, 0)
        if pending >= limit:
            metrics.THROTTLED.labels(partner).inc()
            raise OutboxFull(partner, pending, limit, retry_after=RETRY_AFTER_SECONDS)

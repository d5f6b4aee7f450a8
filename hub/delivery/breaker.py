"""A circuit breaker per partner: stop sending to a partner that keeps failing, try again later with one delivery.

    closed ──(HUB_BREAKER_FAILURES consecutive transient failures)──▶ open
    open ──(HUB_BREAKER_SECONDS later, when a delivery is due)──▶ half-open: ONE trial delivery is claimed
    half-open ──trial delivered──▶ closed        half-open ──trial failed──▶ open again (a new wait)

Why: without it, a partner that is down keeps the workers busy with attempts that cannot succeed
(each burning one of the message's attempts, each waiting for a timeout), and its retries crowd the
claims. While a circuit is open, the partner's deliveries are not claimed at all: they stay PENDING,
their attempts untouched, and are sent once the trial has closed the circuit again.

Only transient failures count (5xx, 429, timeouts, refused connections). A delivery that succeeds
closes the circuit and resets the count; a permanent failure (the partner refused that one message,
a mapping failed) says nothing about the partner's health and leaves the circuit as it is.

Each hub process keeps its own circuits, in memory: several processes each find out for
themselves, which costs at most HUB_BREAKER_FAILURES attempts per process, and needs no shared state.
Transitions are logged (hub.delivery.breaker) and exposed as hub_partner_circuit_open{partner} (1 while open or
half-open) and hub_partner_circuit_opened_total{partner}.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from hub import metrics

log = logging.getLogger("hub.delivery.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass
class _Circuit:
    state: str = CLOSED
    failures: int = 0          # consecutive transient failures while closed
    opened_at: float = 0.0     # clock() when it last opened
    trial: bool = False        # half-open: the one trial delivery is in flight


class Breakers:
    """The circuits of one hub process, one per partner. Thread-safe; `clock` is monotonic seconds.

    `failures` <= 0 disables the breaker (every circuit stays closed)."""

    def __init__(self, partners: Iterable[str], *, failures: int, seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold, self.seconds, self.clock = failures, seconds, clock
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}
        for partner in partners:
            self._circuits[partner] = _Circuit()
            metrics.CIRCUIT_OPEN.labels(partner).set(0)

    def _circuit(self, partner: str) -> _Circuit:
        circuit = self._circuits.get(partner)
        if circuit is None:
            circuit = self._circuits[partner] = _Circuit()
        return circuit

    def state(self, partner: str) -> str:
        with self._lock:
            return self._circuit(partner).state

    def states(self) -> dict[str, str]:
        with self._lock:
            return {partner: circuit.state for partner, circuit in self._circuits.items()}

    def blocked(self) -> set[str]:
        """Partners whose deliveries must not be claimed now: open and still waiting, or half-open with
        the trial in flight."""
        now = self.clock()
        with self._lock:
            return {partner for partner, c in self._circuits.items()
                    if (c.state == OPEN and now - c.opened_at < self.seconds) or (c.state == HALF_OPEN and c.trial)}

    def next_trial_in(self) -> float | None:
        """Seconds until the earliest open circuit may try again (None when none is open)."""
        now = self.clock()
        with self._lock:
            waits = [self.seconds - (now - c.opened_at) for c in self._circuits.values() if c.state == OPEN]
        return max(0.0, min(waits)) if waits else None

    def admit(self, partner: str) -> bool:
        """May one delivery to `partner` be claimed now? An open circuit whose wait is over turns
        half-open and admits exactly one (the trial); the caller must then report its outcome."""
        with self._lock:
            c = self._circuit(partner)
            if c.state == CLOSED:
                return True
            if c.state == OPEN:
                if self.clock() - c.opened_at < self.seconds:
                    return False
                c.state = HALF_OPEN
                log.info("circuit to %s half-open: sending one trial delivery", partner)
            if c.trial:
                return False
            c.trial = True
            return True

    def succeeded(self, partner: str) -> None:
        """A delivery to `partner` went through: the partner is answering."""
        with self._lock:
            c = self._circuit(partner)
            was, c.failures, c.trial = c.state, 0, False
            if was != CLOSED:
                c.state = CLOSED
                metrics.CIRCUIT_OPEN.labels(partner).set(0)
                log.warning("circuit to %s closed: %s delivery succeeded, deliveries resume", partner,
                            "the trial" if was == HALF_OPEN else "a")

    def failed(self, partner: str) -> None:
        """A delivery to `partner` failed transiently."""
        with self._lock:
            c = self._circuit(partner)
            if c.state == HALF_OPEN:
                self._open(partner, c, "the trial delivery failed")
            elif c.state == CLOSED:
                c.failures += 1
                if self.threshold > 0 and c.failures >= self.threshold:
                    self._open(partner, c, f"{c.failures} consecutive transient failures")
            # OPEN: a delivery claimed before the circuit opened; the wait already runs

    def neutral(self, partner: str) -> None:
        """An attempt that says nothing about the partner (a permanent refusal of one message, a claim
        abandoned): a trial in flight is over, the state stays."""
        with self._lock:
            self._circuit(partner).trial = False

    def _open(self, partner: str, c: _Circuit, why: str) -> None:
        c.state, c.opened_at, c.trial, c.failures = OPEN, self.clock(), False, 0
        metrics.CIRCUIT_OPEN.labels(partner).set(1)
        metrics.CIRCUIT_OPENED.labels(partner).inc()
        log.warning("circuit to %s open: %s; its deliveries wait (not attempted) for %g s, then one trial",
                    partner, why, self.seconds)

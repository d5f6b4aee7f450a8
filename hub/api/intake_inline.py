"""Where the API runs intake: inline on the event loop, its commit awaited (hub/concurrency.py).

Intake's steps (parse, validate, verify, sign the receipt) are CPU-bound: in threads, they contend for one
interpreter lock, and measured under the benchmark, a process with 16 intake threads spent as much CPU
switching between them as working. On the loop they run one after the other with no switch at all, and the
wait for the commit lets the loop take the next requests in, whose writes then join the same group commit.
A document over INLINE_MAX_BYTES (rare: answers and messages are a few KB) is taken in on a thread instead,
so that its longer parse and validation do not hold every other request of the process.
"""
from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from hub.concurrency import run_inline
from hub.intake.door import Arrival, Receipt

INLINE_MAX_BYTES = 256 * 1024


async def receive(request, arrival: Arrival) -> Receipt:
    """`hub.receive(arrival)` for an HTTP door."""
    hub = request.app.state.hub
    if arrival.data is not None and len(arrival.data) <= INLINE_MAX_BYTES:
        return await run_inline(hub.receive, arrival)
    return await run_in_threadpool(hub.receive, arrival)

"""Where the API runs intake: on a few threads of its own, not on the event loop nor on anyio's shared pool.

Intake's steps (parse, validate, verify, sign the receipt) are CPU-bound and hold the interpreter lock; its
commit waits on the database. On the event loop, one intake's commit would stall every other request; on
anyio's default pool (40 threads), 16 concurrent callers become 16 threads contending for one lock, and
measured in the benchmark, the process then spent as much CPU switching between them as working. So each
process runs at most HUB_INTAKE_THREADS intakes at once (default 4: enough for one to compute while the
others wait on their group commit); further requests wait their turn on the event loop, costing nothing.
"""
from __future__ import annotations

import anyio
import anyio.to_thread

from hub.intake.door import Arrival, Receipt


def _limiter(state, threads: int) -> anyio.CapacityLimiter:
    limiter = getattr(state, "intake_limiter", None)
    if limiter is None:  # made on first use, inside the event loop that will use it
        limiter = state.intake_limiter = anyio.CapacityLimiter(threads)
    return limiter


async def receive(request, arrival: Arrival) -> Receipt:
    """`hub.receive(arrival)` on one of this process's intake threads."""
    hub = request.app.state.hub
    return await anyio.to_thread.run_sync(hub.receive, arrival,
                                          limiter=_limiter(request.app.state, hub.settings.intake_threads))

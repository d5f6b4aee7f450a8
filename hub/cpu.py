"""How Linux schedules a process's threads: `batch` (SCHED_BATCH) or `normal` (SCHED_OTHER).

One Python process runs one thread at a time: the one holding the interpreter lock. When it wakes another
thread of its process (a delivery handed to a sender, a commit's waiters told, a request's answer written) the
kernel, under the normal policy, often lets the woken thread preempt it on its core. The woken thread then only
asks for the interpreter lock, which the preempted thread still holds: both wait, and the core does nothing
useful until the scheduler comes back to the first. Under SCHED_BATCH a woken thread does not preempt the one
running (Linux's fair scheduler: "batch tasks do not preempt non-idle tasks"); it runs when a core is free or at
the next tick, by when the lock is usually free.

Measured in pairs on the 2-core development machine (docs/performance.md, 5 December 2026): with the hub and
its sandboxes as batch, the SOAP flow (which wakes the most threads per message) +19 % with 15 % less CPU per
message, repatriation +5 %, plain REST deliveries within the noise. Nothing changes while a core is idle: the
woken thread runs on it at once.

The policy is set on the calling thread; the threads it starts afterwards and the processes it spawns inherit
it, so `apply` is called first thing in a process's main thread. Switching between these two policies needs no
privilege. Where the platform has no SCHED_BATCH (not Linux), or refuses, nothing changes.
"""
from __future__ import annotations

import logging
import os
from typing import Literal

log = logging.getLogger("hub.cpu")

Policy = Literal["batch", "normal"]
POLICIES: tuple[Policy, ...] = ("batch", "normal")


def apply(policy: Policy) -> bool:
    """Schedule the calling thread (and the threads and processes it starts from now on) under `policy`;
    returns whether it is in force."""
    number = {"batch": getattr(os, "SCHED_BATCH", None), "normal": getattr(os, "SCHED_OTHER", None)}[policy]
    if number is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, number, os.sched_param(0))
    except OSError as exc:
        log.warning("cannot schedule this process as %s (%s): it keeps the system's policy", policy, exc)
        return False
    return True

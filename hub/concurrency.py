"""Synchronous code run on the event loop that awaits, where it must wait, without blocking the loop.

Intake is synchronous code (parse, validate, verify, sign the receipt, then a commit it must wait for), called
by every door, threads and all. The API runs it on the event loop itself, inline: its CPU-bound steps hold the
loop as they would hold the interpreter lock in any thread, and costs nothing to hand over. Only the wait for
the commit must not hold the loop, or no other request could join that commit's group. `run_inline(fn, ...)`
runs `fn` in a greenlet of the loop's thread; code inside it that has to wait calls `wait_for(future)`, which
hands the future to the loop and resumes when it is done, the loop serving other requests meanwhile. Outside
`run_inline` (a worker thread, a scheduled job) the same code simply blocks: `inline()` tells which.

This is the technique SQLAlchemy's asyncio support is built on, with greenlet. Blocking work that is not the
commit (a refusal recorded, the duplicate of a message looked up, the outbox depths refreshed) goes through
`run_blocking`: on a few threads of its own when inline, so that it never holds the loop either.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from typing import Any, Callable, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _Inline(greenlet):
    """A greenlet whose code runs inline on an event loop (see `run_inline`)."""


def inline() -> bool:
    """Whether the calling code runs inside `run_inline`, on the event loop's thread."""
    return isinstance(getcurrent(), _Inline)


async def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on this thread; each `wait_for` inside it is awaited here, other tasks running meanwhile."""
    child = _Inline(fn, getcurrent())
    child.gr_context = getcurrent().gr_context  # the caller's context variables
    result = child.switch(*args)
    while not child.dead:
        try:
            value = await result
        except BaseException:
            result = child.throw(*sys.exc_info())
        else:
            result = child.switch(value)
    return result


def wait_for(future: concurrent.futures.Future) -> Any:
    """The result of `future` (set by another thread): awaited on the loop when `inline()`, else waited for."""
    if not inline():
        return future.result()
    return getcurrent().parent.switch(asyncio.wrap_future(future))


BLOCKING_THREADS = 8
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, which may wait on the database or the disk: on a thread of a small pool, awaited,
    when the caller is inline on the event loop; in the caller's thread otherwise."""
    if not inline():
        return fn(*args, **kwargs)
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="blocking")
    return wait_for(_pool.submit(fn, *args, **kwargs))

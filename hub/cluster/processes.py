"""`hub serve --processes N`: N complete hub processes behind one port.

One Python process runs its request handling, cryptography and delivery on one core at a time (the
GIL), so a single `hub serve` cannot use a second core. Each child here is an ordinary `hub serve`
(API, delivery workers, a candidate for leadership of the scheduled jobs: hub/cluster/leader.py) that binds
the same port with SO_REUSEPORT; the kernel spreads new connections over them. They share the work
through the database exactly as separate machines would (claims with leases, FOR UPDATE SKIP LOCKED
on PostgreSQL; SQLite's single writer on one file). This parent only starts them, passes SIGINT and
SIGTERM on, and starts again a child that died (a child that dies at once, twice, stops them all: a
configuration error is reported, not looped on).
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("hub.cluster.processes")
QUICK_EXIT_SECONDS = 10   # a child gone this soon after starting did not start at all


def child_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())",
            "serve", "--host", host, "--port", str(port), "--reuse-port"]


def serve_processes(count: int, host: str, port: int) -> int:
    """Run `count` hub processes on host:port until SIGINT/SIGTERM; returns the exit status."""
    children: dict[int, tuple[subprocess.Popen, float, int]] = {}  # slot -> (process, started, quick exits)
    stopping = False

    def start(slot: int, quick_exits: int = 0) -> None:
        children[slot] = (subprocess.Popen(child_command(host, port)), time.monotonic(), quick_exits)

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for process, _, _ in children.values():
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for slot in range(count):
            start(slot)
        status = 0
        while not stopping:
            time.sleep(0.5)
            for slot, (process, started, quick_exits) in list(children.items()):
                code = process.poll()
                if code is None or stopping:
                    continue
                quick = time.monotonic() - started < QUICK_EXIT_SECONDS
                if quick and quick_exits >= 1:
                    log.error("hub process %d exited with %s right after starting, twice: stopping", slot, code)
                    status = code or 1
                    stop(signal.SIGTERM, None)
                    break
                log.warning("hub process %d (pid %d) exited with %s; starting it again", slot, process.pid, code)
                start(slot, quick_exits + 1 if quick else 0)
        for process, _, _ in children.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

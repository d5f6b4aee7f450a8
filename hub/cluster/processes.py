"""`hub serve --processes N [--delivery-processes M]`: N hub processes behind one port, and M that deliver.

One Python process runs its request handling, cryptography and delivery on one core at a time (the
GIL), so a single `hub serve` cannot use a second core. Each child here is an ordinary `hub serve`
(API, delivery workers, a candidate for leadership of the scheduled jobs: hub/cluster/leader.py) that binds
the same port with SO_REUSEPORT; the kernel spreads new connections over them. They share the work
through the database exactly as separate machines would (claims with leases, FOR UPDATE SKIP LOCKED
on PostgreSQL; SQLite's single writer on one file). This parent only starts them, passes SIGINT and
SIGTERM on, and starts again a child that died (a child that dies at once, twice, stops them all: a
configuration error is reported, not looped on).

With M delivery processes (`--delivery-processes`, HUB_DELIVERY_PROCESSES), the N serve the API only and
the M deliver only (hub/service.py, roles): requests and sends then never share an interpreter lock, and
each delivery process holds a small, fixed number of sends in flight per partner (HUB_PARTNER_CONCURRENCY)
over one client per partner. The API processes wake them after each commit (hub/cluster/wake.py).
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("hub.cluster.processes")
QUICK_EXIT_SECONDS = 10   # a child gone this soon after starting did not start at all


HUB = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())", "serve"]


def child_command(host: str, port: int, *, role: str = "all", delivery: int = 0) -> list[str]:
    """An API (or complete) process; `delivery`: how many delivery processes it wakes."""
    return HUB + ["--host", host, "--port", str(port), "--reuse-port", "--role", role,
                  "--delivery-processes", str(delivery)]


def delivery_command(slot: int) -> list[str]:
    return HUB + ["--role", "delivery", "--delivery-slot", str(slot)]


def serve_processes(count: int, host: str, port: int, *, delivery: int = 0) -> int:
    """Run `count` hub processes on host:port (and `delivery` delivery processes) until SIGINT/SIGTERM;
    returns the exit status."""
    children: dict[int, tuple[subprocess.Popen, float, int]] = {}  # slot -> (process, started, quick exits)
    stopping = False
    commands = [child_command(host, port, role="api" if delivery else "all", delivery=delivery)
                for _ in range(count)]
    commands += [delivery_command(slot) for slot in range(delivery)]

    def start(slot: int, quick_exits: int = 0) -> None:
        children[slot] = (subprocess.Popen(commands[slot]), time.monotonic(), quick_exits)

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for process, _, _ in children.values():
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for slot in range(len(commands)):
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

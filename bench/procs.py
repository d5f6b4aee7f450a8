"""Processes the benchmark starts, and what /proc says about them (CPU seconds, peak resident memory)."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": fields[0] is field 3 (state)


def family(pid: int) -> list[int]:
    """A process and its living children (`hub serve --processes N` runs its work in children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:  # field 4: the parent's pid
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    return [pid, *children]


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time of a process and its living children, all their threads (fields 14 and 15 of
    /proc/<pid>/stat); `reaped`: and of its children that exited and were waited for (fields 16 and 17)."""
    total = 0.0
    for member in family(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if reaped and member == pid:
            total += (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return total


def database_server(url: str) -> int | None:
    """The pid of the PostgreSQL server at `url` when it runs on this machine, else None: the parent of this
    connection's backend. Its processes' CPU (`cpu_seconds(server, reaped=True)`: the server, its backends and the
    backends that have exited) is part of what a message costs on a machine the hub shares with its database."""
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:  # while the connection is open: its backend exits when it closes
            server = int(_stat_fields(backend)[1])
            names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in (backend, server)}
        except (OSError, ValueError, IndexError):  # not a process of this machine
            return None
    return server if names <= {"postgres", "postmaster"} else None


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Process:
    """A child process with its output in a log file; `stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list[str], *, env: dict, log_path: Path, health_url: str | None = None):
        self.name, self.health_url, self.log_path = name, health_url, log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting; see {self.log_path}")
            try:
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self.health_url} within {timeout:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def progress_bar(console):
    """The benchmark's progress bar (rich)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)

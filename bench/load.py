"""The load process: POSTs pre-signed messages to the hub over raw HTTP/1.1 keep-alive connections.

    python -m bench.load --url URL[,URL...] --input messages.bin --concurrency C --result out.json [--rate R]

It shares the machine's cores with the hub, so it is kept as cheap as it can be: one process, one
asyncio loop, requests written as bytes prepared once and answers read by Content-Length (about a
tenth of httpx's CPU per request). The administrator token comes from the environment (BENCH_TOKEN).

Two ways to drive:
  - closed loop (no --rate): C connections, each sending its next message as soon as the previous
    one is answered; what the hub can take (accepted messages/s).
  - open loop (--rate R): message i is due at t0 + i/R whatever happened to earlier ones, and is sent
    on an idle connection of a pool of C; when every connection is busy it waits for one, and that wait
    is part of its latency. Latency is measured from the due time, so a hub that falls behind shows it
    (no coordinated omission).

Progress goes to stdout as JSON lines; the result (per-message latencies, statuses, CPU) to --result.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from bench.messages import read

PATH = "/api/v1/messages"


class Connection:
    """One keep-alive HTTP/1.1 connection to a hub; reopened when the hub closes it."""

    def __init__(self, host: str, port: int, headers: bytes):
        self.host, self.port, self.headers = host, port, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; reconnects once if the kept-alive connection was closed meanwhile."""
        for attempt in (1, 2):
            if self.writer is None:
                await self.open()
            try:
                self.writer.write(self.headers + str(len(body)).encode() + b"\r\n\r\n" + body)
                return await self._answer()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _answer(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await (self._chunks() if chunked else self.reader.readexactly(length))
        if close:
            self.close()
        return status, body

    async def _chunks(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append((await self.reader.readexactly(size + 2))[:-2])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_head(url: str, token: str) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes up to the Content-Length value) for POSTs to `url`."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/xml\r\nContent-Length: ").encode()
    return host, port, head


class Load:
    """The messages, their latencies and statuses, and the connections (spread over the hubs' URLs)."""

    def __init__(self, urls: list[str], token: str, messages: list[bytes], connections: int):
        self.messages = messages
        self.latencies = [0.0] * len(messages)
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.done = 0
        heads = [request_head(url, token) for url in urls]
        self.connections = [Connection(*heads[n % len(heads)]) for n in range(max(1, connections))]

    async def send(self, connection: Connection, index: int, started: float) -> None:
        try:
            status, body = await connection.post(self.messages[index])
            problem = "" if status == 202 else body[:300].decode(errors="replace")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status, problem = "error", f"{type(exc).__name__}: {exc}"
            connection.close()
        self.latencies[index] = time.perf_counter() - started
        self.statuses[str(status)] += 1
        self.done += 1
        if problem and len(self.errors) < 10:
            self.errors.append(f"{status} {problem}")

    async def closed_loop(self) -> None:
        position = iter(range(len(self.messages)))

        async def worker(connection: Connection) -> None:
            for index in position:
                await self.send(connection, index, time.perf_counter())

        await asyncio.gather(*(worker(c) for c in self.connections))

    async def open_loop(self, rate: float) -> list[float]:
        """Message i due at t0 + i/rate; returns the due times (perf_counter seconds)."""
        idle: asyncio.Queue = asyncio.Queue()
        for connection in self.connections:
            idle.put_nowait(connection)
        tasks: set = set()
        start = time.perf_counter() + 0.05
        due_times = [start + i / rate for i in range(len(self.messages))]

        async def one(index: int, due: float, connection: Connection) -> None:
            try:
                await self.send(connection, index, due)
            finally:
                idle.put_nowait(connection)

        for index, due in enumerate(due_times):
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            connection = await idle.get()  # all busy: the wait counts, latency runs from `due`
            task = asyncio.create_task(one(index, due, connection))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return due_times

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


async def progress(load: Load) -> None:
    while True:
        await asyncio.sleep(0.25)
        print(json.dumps({"done": load.done, "errors": load.done - load.statuses.get("202", 0)}), flush=True)


async def drive(load: Load, rate: float | None) -> dict:
    await asyncio.gather(*(c.open() for c in load.connections))  # connected before any timing
    reporter = asyncio.create_task(progress(load))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_start, perf_start = time.time(), time.perf_counter()
    due_times = await load.open_loop(rate) if rate else (await load.closed_loop()) or None
    elapsed = time.perf_counter() - perf_start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    reporter.cancel()
    load.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result = {"wall_start": wall_start, "wall_end": wall_start + elapsed, "elapsed_seconds": elapsed,
              "sent": len(load.messages), "statuses": dict(load.statuses), "accepted": load.statuses.get("202", 0),
              "errors": load.errors, "latencies": load.latencies, "cpu_seconds": cpu,
              "concurrency": len(load.connections), "rate": rate}
    if due_times:
        span = due_times[-1] - due_times[0]
        result["offered_per_second"] = round((len(due_times) - 1) / span, 1) if span > 0 else None
        # achieved: answers received over the time from the first due time to the last answer
        last_answer = max(due + latency for due, latency in zip(due_times, load.latencies))
        result["achieved_per_second"] = round(result["accepted"] / (last_answer - due_times[0]), 1)
        result["wall_first_due"] = wall_start + (due_times[0] - perf_start)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--url", required=True, help="the hubs' base URLs, separated by commas")
    parser.add_argument("--input", required=True, help="messages written by bench.messages.write")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (in the open loop: the pool)")
    parser.add_argument("--rate", type=float, default=None, help="open loop: messages offered per second")
    parser.add_argument("--result", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    token = os.environ["BENCH_TOKEN"]
    urls = [url.strip() for url in args.url.split(",") if url.strip()]
    load = Load(urls, token, read(args.input), args.concurrency)
    result = asyncio.run(drive(load, args.rate))
    with open(args.result, "w") as handle:
        json.dump(result, handle)
    print(json.dumps({"done": load.done, "errors": load.done - load.statuses.get("202", 0), "finished": True}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The load process: `python -m bench.load` POSTs pre-signed messages to the hub's /api/v1/messages.

Run by `python -m bench` as a process of its own, so that building requests and reading answers do
not share the benchmark's interpreter. C threads, each with one keep-alive httpx.Client, take the
next message until none is left; with several hub URLs (several `hub serve` processes on one
database) connection i goes to URL i mod their number. The token comes from the environment (BENCH_TOKEN), never the
command line. Progress goes to standard output as JSON lines ({"done": n, "errors": e}), the
result to --result as JSON: wall-clock start and end, each request's latency, status counts, the
first few errors and this process's CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections import Counter

import httpx

from bench.messages import read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the hub's base URL, or several separated by commas")
    parser.add_argument("--input", required=True, help="file of length-prefixed messages (bench/messages.py)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--result", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    token = os.environ["BENCH_TOKEN"]
    messages = read(args.input)
    latencies = [0.0] * len(messages)
    statuses: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    position = iter(range(len(messages)))
    done = [0]
    urls = [url.strip() for url in args.url.split(",") if url.strip()]

    def worker(number: int) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
        with httpx.Client(base_url=urls[number % len(urls)], headers=headers, timeout=120,
                          limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) as client:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    response = client.post("/api/v1/messages", content=messages[index])
                    status, problem = response.status_code, (response.text[:300] if response.status_code != 202 else "")
                except httpx.HTTPError as exc:
                    status, problem = "error", f"{type(exc).__name__}: {exc}"
                latencies[index] = time.perf_counter() - started
                with lock:
                    statuses[str(status)] += 1
                    done[0] += 1
                    if problem and len(errors) < 10:
                        errors.append(f"{status} {problem}")

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(max(1, args.concurrency))]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_start, perf_start = time.time(), time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.25)
        with lock:
            line = {"done": done[0], "errors": done[0] - statuses.get("202", 0)}
        print(json.dumps(line), flush=True)
    elapsed = time.perf_counter() - perf_start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result = {"wall_start": wall_start, "wall_end": wall_start + elapsed, "elapsed_seconds": elapsed,
              "sent": len(messages), "statuses": dict(statuses), "accepted": statuses.get("202", 0),
              "errors": errors, "latencies": latencies, "cpu_seconds": cpu, "concurrency": args.concurrency}
    with open(args.result, "w") as handle:
        json.dump(result, handle)
    print(json.dumps({"done": done[0], "errors": done[0] - statuses.get("202", 0), "finished": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

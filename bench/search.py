"""The search phase of the benchmark: GET /api/v1/messages with the filters an operator uses, timed.

Run after the load, against the hub(s) of the run, so the table holds the preloaded history (if any)
and the messages just sent. Each round asks every query of QUERIES once (a first page of 50, newest
first, with its total); the second page is fetched by the first page's `next_before`. Latencies are
wall-clock per request, from one client with a keep-alive connection, spread over the hubs' URLs.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import httpx


def queries(case: str) -> dict[str, dict]:
    """Name -> query parameters; `case` is a case of the run (its messages were just sent)."""
    return {
        "newest": {},
        "by state (DELIVERED)": {"state": "DELIVERED"},
        "by state (DEAD)": {"state": "DEAD"},
        "by type": {"type": "LicenceAuthenticationRequest"},
        "by partner (NARSA)": {"partner": "NARSA"},
        "by partner (JUSTICE)": {"partner": "JUSTICE"},
        "by case": {"correlation_id": case},
        "second page (by partner)": {"partner": "NARSA", "page": 2},
    }


def run(urls: list[str], token: str, case: str, rounds: int,
        on_progress: Callable[[int], None] | None = None) -> dict:
    """Time `rounds` rounds of every query; returns each request's latency (s) by query name, and totals."""
    latencies: dict[str, list[float]] = {name: [] for name in queries(case)}
    totals: dict[str, int | str] = {}   # "10000+": more than that (the API counts exactly up to a limit)
    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) for url in urls]
    done = 0
    try:
        for round_ in range(rounds):
            for name, params in queries(case).items():
                client = clients[done % len(clients)]
                params = dict(params)
                if params.pop("page", 1) == 2:
                    first = client.get("/api/v1/messages", params=params)
                    first.raise_for_status()
                    params["before"] = first.json()["next_before"] or 1
                started = time.perf_counter()
                response = client.get("/api/v1/messages", params=params)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"search {name} {params}: HTTP {response.status_code}: {response.text[:300]}")
                latencies[name].append(elapsed)
                body = response.json()
                totals[name] = body["total"] if body.get("total_exact", True) else f"{body['total']}+"
                done += 1
                if on_progress:
                    on_progress(done)
    finally:
        for client in clients:
            client.close()
    return {"latencies": latencies, "totals": totals, "requests": done}


def summary(result: dict, percentiles: Callable[[list[float]], dict]) -> dict:
    """Percentiles (ms) over every search, and per query its p50/p95 and the total it answered."""
    every = sorted(x for values in result["latencies"].values() for x in values)
    return {"requests": result["requests"], "latency_ms": percentiles(every),
            "queries": {name: {"total": result["totals"].get(name),
                               "p50_ms": round(statistics.median(values) * 1e3, 2),
                               "p95_ms": percentiles(sorted(values))["p95"]}
                        for name, values in result["latencies"].items() if values}}

"""The console phase of the benchmark (`python -m bench --console`): the monitor at the size of the history.

1. A console account (`hub users create --role supervisor`, the password on standard input) signs in
   through /monitor/login, as a person would: the pages are then asked with its session cookie.
2. Timings, one client, one keep-alive connection, `requests` times each (after one warm-up request):
   the overview page (GET /monitor/), the overview's JSON (GET /api/v1/monitor/overview, a token), the
   message search page (GET /monitor/messages?partner=NARSA) and the search API
   (GET /api/v1/messages?partner=NARSA). A page the hub does not serve (404, or no console sign-in) is
   reported as not available, not as a failure.
3. `LiveViews`: N open overviews, each refreshing its live fragment (GET /monitor/overview/live) every
   `every` seconds as console.js does, while the load runs again: intake throughput with and without them.
"""
from __future__ import annotations

import re
import secrets
import statistics
import subprocess
import threading
import time
from typing import Callable

import httpx

NOT_AVAILABLE = "not available"
USERNAME = "bench-supervisor"


def create_account(command: list[str], env: dict, run_id: str) -> tuple[str, str] | None:
    """A supervisor account for the run, or None when this hub has no console accounts."""
    password = secrets.token_urlsafe(18)
    username = f"{USERNAME}-{run_id.lower()}"
    done = subprocess.run(command + ["users", "create", "--role", "supervisor", "--username", username,
                                     "--name", f"Benchmark {run_id}"],
                          input=f"{password}\n{password}\n", env=env, capture_output=True, text=True, timeout=120)
    return (username, password) if done.returncode == 0 else None


def sign_in(base_url: str, username: str, password: str) -> httpx.Client | None:
    """A client holding a console session, or None when signing in does not succeed."""
    client = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
    try:
        form = client.get("/monitor/login")
        if form.status_code != 200:
            client.close()
            return None
        token = re.search(r'name="csrf_token"\s+value="([^"]*)"', form.text)
        data = {"username": username, "password": password, "next": "/monitor/"}
        if token:
            data["csrf_token"] = token.group(1)
        answer = client.post("/monitor/login", data=data)
        if answer.status_code not in (200, 302, 303) or not client.cookies:
            client.close()
            return None
        if client.get("/monitor/").status_code != 200:
            client.close()
            return None
        return client
    except httpx.HTTPError:
        client.close()
        return None


def pages(case: str) -> dict[str, tuple[str, str, dict]]:
    """Name -> (who asks: "session" or "token", path, query)."""
    return {
        "overview page": ("session", "/monitor/", {}),
        "overview JSON": ("token", "/api/v1/monitor/overview", {}),
        "search page (by partner)": ("session", "/monitor/messages", {"partner": "NARSA"}),
        "search page (by case)": ("session", "/monitor/messages", {"correlation_id": case}),
        "search JSON (by partner)": ("token", "/api/v1/messages", {"partner": "NARSA"}),
    }


def time_pages(session: httpx.Client | None, api: httpx.Client, case: str, requests: int,
               on_progress: Callable[[int], None] | None = None) -> dict:
    """p50/p95/max (ms) of each page over `requests` requests, or NOT_AVAILABLE with why."""
    results: dict[str, dict | str] = {}
    done = 0
    for name, (who, path, query) in pages(case).items():
        client = session if who == "session" else api
        if client is None:
            results[name] = f"{NOT_AVAILABLE}: no console session (the hub has no console sign-in)"
            continue
        first = client.get(path, params=query)  # warm-up, and is the page there at all
        if first.status_code in (404, 405):
            results[name] = f"{NOT_AVAILABLE}: {path} answers {first.status_code}"
            continue
        if first.status_code != 200:
            raise RuntimeError(f"{name}: GET {path} answered {first.status_code}: {first.text[:300]}")
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path, params=query)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: GET {path} answered {response.status_code}: {response.text[:300]}")
            done += 1
            if on_progress:
                on_progress(done)
        results[name] = summary(latencies, len(first.content))
    return results


def summary(seconds: list[float], size: int) -> dict:
    ordered = sorted(seconds)
    at = lambda q: round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1e3, 2)  # noqa: E731
    return {"requests": len(ordered), "p50_ms": round(statistics.median(ordered) * 1e3, 2), "p95_ms": at(0.95),
            "max_ms": round(ordered[-1] * 1e3, 2), "bytes": size}


class LiveViews:
    """`count` open overviews refreshing their live fragment every `every` seconds (each its own connection,
    all with the same signed-in session's cookies), staggered over the interval as real viewers are."""

    def __init__(self, base_url: str, cookies, *, count: int, every: float, path: str = "/monitor/overview/live",
                 headers: dict | None = None):
        self.base_url, self.cookies, self.count, self.every, self.path = base_url, cookies, count, every, path
        self.headers = headers or {}
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: dict[int | str, int] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "LiveViews":
        for i in range(self.count):
            thread = threading.Thread(target=self._view, args=(i * self.every / self.count,), daemon=True,
                                      name=f"live-view-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def _view(self, delay: float) -> None:
        if self.stop.wait(delay):
            return
        with httpx.Client(base_url=self.base_url, cookies=self.cookies, headers=self.headers, timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    status: int | str = self._get(client)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.latencies.append(elapsed)
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stop.wait(max(0.0, self.every - elapsed))

    def _get(self, client: httpx.Client) -> int:
        """One refresh; a keep-alive connection the hub closed while the view waited is opened again once, as a
        browser does (the wait is as long as the server's keep-alive timeout)."""
        try:
            return client.get(self.path).status_code
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            return client.get(self.path).status_code

    def report(self) -> dict:
        with self._lock:
            latencies, statuses = list(self.latencies), dict(self.statuses)
        return {"views": self.count, "every_seconds": self.every, "path": self.path, "refreshes": len(latencies),
                "statuses": {str(k): v for k, v in statuses.items()},
                **({"latency": summary(latencies, 0)} if latencies else {})}

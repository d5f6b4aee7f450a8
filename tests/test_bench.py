"""The benchmark (bench/) end to end on a tiny load: it starts `hub serve` and the NARSA sandbox,
sends, waits for delivery and writes its JSON report. Behaviour only: no speed is asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub.settings import PROJECT_ROOT

MESSAGES = 80    # a tiny load: the run's phases, report and clean-up are the subject, not its figures


@pytest.mark.slow
def test_bench_reports_every_message_accepted_and_delivered(tmp_path, pki_dir):
    output = tmp_path / "bench.json"
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
           "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "bench", "--messages", str(MESSAGES), "--concurrency", "4",
                           "--database", "sqlite", "--floor-rounds", "2", "--output", str(output)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["sent"] == MESSAGES
    assert report["accepted"] == report["sent"]
    assert report["delivered"] == report["accepted"]
    assert report["statuses"] == {"202": MESSAGES} and not report["errors"] and not report["stalled"]
    assert report["accepted_per_second"] > 0 and report["delivered_per_second"] > 0
    for name in ("intake_latency_ms", "end_to_end_latency_ms"):
        p = report[name]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"] <= p["max"], (name, p)
    assert report["hub_cpu_ms_per_message"] > 0 and report["hub_peak_rss_mb"] > 10
    steps = report["floor"]["steps_us"]
    assert set(steps) == {"parse", "validate", "verify", "map", "sign", "commit"} and all(v > 0 for v in steps.values())
    assert report["floor"]["total_us"] == pytest.approx(sum(steps.values()), abs=1)
    assert report["accepted_to_floor_ratio"] > 0
    assert 3000 < report["message_bytes_median"] < 4500
    assert "Hub benchmark" in done.stdout and "accepted messages/s" in done.stdout
    assert not (tmp_path / "var" / "bench" / "run").exists()  # cleaned up after a good run


@pytest.mark.slow
def test_bench_with_a_preloaded_history_and_two_hub_processes(tmp_path, pki_dir):
    """--preload stores a history first (counted apart from the run's own messages), --hub-processes 2 spreads
    the load over two `hub serve` processes on one SQLite file, and the search phase times GET /api/v1/messages."""
    output = tmp_path / "bench.json"
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
           "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "bench", "--messages", str(MESSAGES), "--concurrency", "4",
                           "--database", "sqlite", "--floor-rounds", "1", "--preload", "1000", "--hub-processes", "2",
                           "--searches", "3", "--output", str(output)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    print({k: report[k] for k in ("preloaded", "preload_seconds", "hub_processes", "accepted", "delivered",
                                  "hub_peak_rss_mb", "hub_peak_rss_mb_summed")}, report["search"]["latency_ms"])
    assert report["preloaded"] == 1000 and report["hub_processes"] == 2
    assert report["accepted"] == report["sent"] == MESSAGES and report["delivered"] == MESSAGES  # the run's own
    assert sum(row["count"] for row in report["deliveries_by_partner"]) == MESSAGES
    assert report["hub_peak_rss_mb_summed"] > report["hub_peak_rss_mb"] > 10
    search = report["search"]
    assert search["requests"] == 3 * len(search["queries"])
    assert 0 < search["latency_ms"]["p50"] <= search["latency_ms"]["p95"]
    # the history is found by the search: 60 % of it (and the run's own) are licence requests to NARSA
    assert search["queries"]["by type"]["total"] == 600 + MESSAGES
    assert search["queries"]["by case"]["total"] == 1
    assert "search latency" in done.stdout and "2 hub process(es)" in done.stdout

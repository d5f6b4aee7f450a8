"""`python -m bench compare BASE -- <options>` (bench/compare.py): the base checked out in a worktree, runs
alternated in pairs, each figure's runs, medians and change per pair. The summary is tested on crafted
reports; one tiny comparison runs the benchmark for real, twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))  # bench/ is not an installed package

from bench.compare import figure, order, summarise  # noqa: E402


def report(delivered: float, cpu: float, soap: float | None = None) -> dict:
    made = {"floor": {"total_us": 1700.0}, "delivered_per_second": delivered, "hub_cpu_ms_per_delivered": cpu}
    if soap is not None:
        made["soap"] = {"delivered_per_second": soap}
    return made


def test_pairs_alternate_which_side_runs_first():
    assert [order(pair) for pair in (1, 2, 3, 4)] == [("base", "this"), ("this", "base")] * 2


def test_a_figure_is_read_at_its_dotted_path_and_only_as_a_number():
    assert figure({"soap": {"delivered_per_second": 101}}, "soap.delivered_per_second") == 101.0
    assert figure({"soap": None}, "soap.delivered_per_second") is None
    assert figure({}, "delivered_per_second") is None
    assert figure({"stalled": True, "what": "x"}, "stalled") is None and figure({"what": "x"}, "what") is None


def test_the_summary_gives_medians_and_the_change_of_each_pair():
    rows = {row["figure"]: row for row in summarise({
        "base": [report(200, 6.4), report(190, 7.0), report(230, 6.0)],
        "this": [report(220, 6.0), report(185, 7.7), report(253, 5.4)]})}
    delivered = rows["delivered_per_second"]
    assert (delivered["base_median"], delivered["this_median"]) == (200, 220)
    assert [round(change, 3) for change in delivered["changes"]] == [0.1, -0.026, 0.1]
    assert round(delivered["median_change"], 3) == 0.1 and delivered["pairs_better"] == 2
    cpu = rows["hub_cpu_ms_per_delivered"]  # less is better: two pairs used less CPU
    assert cpu["pairs_better"] == 2 and not cpu["more_is_better"]
    assert rows["floor.total_us"]["median_change"] == 0 and rows["floor.total_us"]["pairs_better"] == 0


def test_a_figure_missing_from_any_run_is_left_out():
    rows = summarise({"base": [report(200, 6, soap=100), report(210, 6, soap=90)],
                      "this": [report(205, 6, soap=110), report(190, 6)]})
    assert "soap.delivered_per_second" not in {row["figure"] for row in rows}
    assert "delivered_per_second" in {row["figure"] for row in rows}


def _compare(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "compare", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_base_that_is_no_commit_or_an_output_of_its_own_is_refused(tmp_path):
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var")}
    unknown = _compare("no-such-commit-anywhere", "--", "--phases", "soap", env=env)
    assert unknown.returncode == 2 and "'no-such-commit-anywhere' is not a commit of this repository" in unknown.stdout
    assert not (tmp_path / "var" / "bench-compare").exists()
    output = _compare("HEAD", "--", "-o", "mine.json", env=env)
    assert output.returncode == 2 and "-o/--output is set by the comparison" in output.stderr


@pytest.mark.slow
def test_a_comparison_runs_both_sides_and_removes_the_base_worktree(tmp_path, pki_dir):
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir)}
    done = _compare("HEAD", "--pairs", "1", "--", "--messages", "40", "--concurrency", "4", "--floor-rounds", "2",
                    "--phases", "throughput", env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = [line.split(":")[1].split("...")[0].strip() for line in done.stdout.splitlines() if line.startswith("pair ")]
    assert runs == ["base", "this checkout"]
    assert "delivered messages/s" in done.stdout and "change % (each pair)" in done.stdout
    work = tmp_path / "var" / "bench-compare"
    summary = json.loads((work / "summary.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()
    assert summary["base_commit"] == head and summary["pairs"] == 1
    delivered = next(row for row in summary["figures"] if row["figure"] == "delivered_per_second")
    assert len(delivered["base"]) == len(delivered["this"]) == 1 and min(delivered["base"] + delivered["this"]) > 0
    for side in ("base", "this"):
        assert json.loads((work / f"{side}-1.json").read_text())["delivered"] == 40
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    assert str(work) not in worktrees and not (work / f"tree-{head[:12]}").exists()

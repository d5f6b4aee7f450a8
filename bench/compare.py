"""Two versions of the hub measured in pairs: `python -m bench compare BASE -- <benchmark options>`.

This machine is shared and its runs move by a fifth from one to the next, so a change is judged against the
code before it in runs made back to back, never against figures of another hour:

1. BASE (a commit, a branch, a tag) is checked out in a git worktree under <HUB_VAR_DIR>/bench-compare/, removed
   afterwards (`--keep` keeps it); the other side is this checkout as it is, uncommitted changes included;
2. `python -m bench` runs with the same options on each side, `--pairs` times, the order alternated (base then
   this checkout, then the other way round), each run with the interpreter running this command;
3. a table gives, for each figure the runs reported, both sides' medians, the change of each pair (this
   checkout against base) and their median: a change that is real moves every pair the same way.
   The reports and logs stay there (`summary.json`, `<side>-<pair>.json` and `.log`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hub.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent

# (path in the report, label, whether more is better)
FIGURES = (
    ("floor.total_us", "floor (µs)", False),
    ("accepted_per_second", "accepted messages/s", True),
    ("delivered_per_second", "delivered messages/s", True),
    ("hub_cpu_ms_per_delivered", "hub CPU per delivered message (ms)", False),
    ("database_cpu_ms_per_delivered", "PostgreSQL CPU per delivered message (ms)", False),
    ("sustained.intake_latency_ms.p99", "sustained: intake p99 (ms)", False),
    ("sustained.end_to_end_latency_ms.p99", "sustained: end-to-end p99 (ms)", False),
    ("soap.delivered_per_second", "SOAP messages/s", True),
    ("soap.hub_cpu_ms_per_message", "SOAP: hub CPU per message (ms)", False),
    ("soap.database_cpu_ms_per_message", "SOAP: PostgreSQL CPU per message (ms)", False),
    ("repatriation.cases_per_second", "repatriation cases/s", True),
    ("repatriation.hub_cpu_ms_per_message", "repatriation: hub CPU per case (ms)", False),
    ("repatriation.database_cpu_ms_per_message", "repatriation: PostgreSQL CPU per case (ms)", False),
)
SHOWN_PER_RUN = ("accepted_per_second", "delivered_per_second", "hub_cpu_ms_per_delivered",
                 "soap.delivered_per_second", "repatriation.cases_per_second")
SIDES = ("base", "this")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare", description=__doc__.split("\n\n")[0],
        usage="%(prog)s [-h] [--pairs N] [--keep] BASE [-- BENCHMARK OPTIONS]",
        epilog="The benchmark's options (python -m bench --help) come after --, the same for both sides, without "
               "-o/--output. Example: python -m bench compare HEAD~1 -- --phases soap --scenario-messages 1000")
    parser.add_argument("base", help="the version to compare this checkout with: a commit, branch or tag")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each side, alternated (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the base's worktree afterwards")
    return parser


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """The comparison's own arguments, and the benchmark's (those after the first --)."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def order(pair: int) -> tuple[str, str]:
    """Which side runs first in pair `pair` (from 1): base first in odd pairs, this checkout in even ones."""
    return SIDES if pair % 2 else SIDES[::-1]


def figure(report: dict, path: str) -> float | None:
    """The number at a dotted path of a report; None when the run did not report it."""
    value = report
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarise(reports: dict[str, list[dict]]) -> list[dict]:
    """For each figure both sides reported in every run: the runs' values, the medians, each pair's change
    (this checkout against base, a fraction) and how many pairs changed for the better."""
    rows = []
    for path, label, more_is_better in FIGURES:
        base = [figure(report, path) for report in reports["base"]]
        this = [figure(report, path) for report in reports["this"]]
        if not base or None in base or None in this or len(base) != len(this):
            continue
        changes = [(new - old) / old if old else 0.0 for old, new in zip(base, this)]
        better = sum(1 for change in changes if (change > 0) == more_is_better and change != 0)
        rows.append({"figure": path, "label": label, "base": base, "this": this,
                     "base_median": statistics.median(base), "this_median": statistics.median(this),
                     "changes": changes, "median_change": statistics.median(changes), "pairs_better": better,
                     "more_is_better": more_is_better})
    return rows


def table(rows: list[dict], pairs: int) -> Table:
    """Medians of each side, the median change and each pair's (every run's value is in summary.json)."""
    out = Table(title=f"this checkout against base: medians of {pairs} pair{'s' if pairs > 1 else ''}, alternated; "
                      "better: the pairs in which this checkout did better")
    for column in ("figure", "base", "this", "change % (each pair)", "better"):
        out.add_column(column, justify="left" if column == "figure" else "right")
    for row in rows:
        each = ", ".join(f"{100 * change:+.1f}" for change in row["changes"])
        out.add_row(row["label"], f"{row['base_median']:.4g}", f"{row['this_median']:.4g}",
                    f"{100 * row['median_change']:+.1f} ({each})", f"{row['pairs_better']}/{pairs}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    own, bench_args = split_arguments(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if any(a in ("-o", "--output") or a.startswith("--output=") for a in bench_args):
        parser.error("-o/--output is set by the comparison (<HUB_VAR_DIR>/bench-compare/<side>-<pair>.json)")
    console = Console()
    work = Settings.from_env().var_dir / "bench-compare"
    commit = _git("rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}")
    if commit is None:
        console.print(f"[red]{args.base!r} is not a commit of this repository[/]", highlight=False)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    for earlier in [*work.glob("*.json"), *work.glob("*.log")]:  # a comparison's files are its own
        earlier.unlink()
    tree = work / f"tree-{commit[:12]}"
    if not tree.exists() and _git("worktree", "add", "--detach", str(tree), commit) is None:
        console.print(f"[red]cannot check {commit[:12]} out in {tree} (git worktree add failed)[/]", highlight=False)
        return 2
    trees = {"base": tree, "this": PROJECT}
    console.print(f"base: {args.base} ({commit[:12]}) in {tree}; this checkout: {PROJECT}\n"
                  f"benchmark options: {' '.join(bench_args) or '(the defaults)'}", highlight=False)
    reports: dict[str, list[dict]] = {side: [] for side in SIDES}
    try:
        for pair in range(1, args.pairs + 1):
            for side in order(pair):
                report = _run(console, work, side, pair, args.pairs, trees[side], bench_args)
                if report is None:
                    return 1
                reports[side].append(report)
    except KeyboardInterrupt:  # the running benchmark stops its own processes
        console.print("[yellow]interrupted[/]")
        return 130
    finally:
        if not args.keep:
            _git("worktree", "remove", "--force", str(tree))
            shutil.rmtree(tree, ignore_errors=True)
            _git("worktree", "prune")
    rows = summarise(reports)
    console.print(table(rows, args.pairs))
    (work / "summary.json").write_text(json.dumps({"base": args.base, "base_commit": commit, "pairs": args.pairs,
                                                   "bench_args": bench_args, "figures": rows}, indent=2))
    console.print(f"reports and logs in {work}", highlight=False)
    return 0


def _run(console: Console, work: Path, side: str, pair: int, pairs: int, tree: Path,
         bench_args: list[str]) -> dict | None:
    """One benchmark run of one side; its report, or None (said why) when it failed."""
    output, log = work / f"{side}-{pair}.json", work / f"{side}-{pair}.log"
    output.unlink(missing_ok=True)
    what = "base" if side == "base" else "this checkout"
    console.print(f"pair {pair}/{pairs}: {what} ...", end=" ", highlight=False)
    started = time.monotonic()
    with log.open("w") as written:
        code = subprocess.run([sys.executable, "-m", "bench", *bench_args, "-o", str(output)], cwd=tree,
                              stdout=written, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if code not in (0, 1) or not output.exists():  # 1: --check found a target missed, the report is whole
        console.print(f"[red]failed (exit {code}); see {log}[/]", highlight=False)
        return None
    report = json.loads(output.read_text())
    shown = [f"{label} {value:g}" for path, label, _ in FIGURES
             if path in SHOWN_PER_RUN and (value := figure(report, path)) is not None]
    console.print(f"{time.monotonic() - started:.0f} s: {'; '.join(shown)}", highlight=False)
    return report


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())

"""The targets of the hub's speed (issue 16), in one place, and `judge`: a report against them.

`python -m bench --check` judges the run it just made, `python -m bench --check FILE` a report written
before; either exits 1 naming each missed target (measured vs target), 0 when all are met. A target
whose phase was not run is "not measured" and counts as missed: a check that skips a phase cannot pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

CPU_TO_FLOOR = 2.5                 # hub CPU per delivered message at most this many times the floor
ACCEPTED_PER_SECOND = {"sqlite": 600.0, "postgresql": 400.0}
DELIVERED_PER_SECOND = 250.0       # to the NARSA REST sandbox
SUSTAINED_RATE = 150.0             # messages/s offered in the sustained phase ...
SUSTAINED_INTAKE_P99_MS = 50.0     # ... at which intake p99 stays below this
SUSTAINED_END_TO_END_P99_MS = 500.0
SOAP_DELIVERED_PER_SECOND = 150.0  # PassportApplication to the DGSN SOAP sandbox
REPATRIATION_CASES_PER_SECOND = 60.0  # RepatriationRequest delivered to SANTE, ETAT_CIVIL and DGSN


@dataclass
class Verdict:
    name: str
    target: str
    measured: str        # "not measured (...)" when the phase did not run
    met: bool


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _at_most(name: str, limit: float, unit: str, value, why_missing: str) -> Verdict:
    value = _number(value)
    if value is None:
        return Verdict(name, f"≤ {limit:g} {unit}", f"not measured ({why_missing})", False)
    return Verdict(name, f"≤ {limit:g} {unit}", f"{value:g} {unit}", value <= limit)


def _at_least(name: str, limit: float, unit: str, value, why_missing: str) -> Verdict:
    value = _number(value)
    if value is None:
        return Verdict(name, f"≥ {limit:g} {unit}", f"not measured ({why_missing})", False)
    return Verdict(name, f"≥ {limit:g} {unit}", f"{value:g} {unit}", value >= limit)


def _cpu_to_floor(report: dict) -> Verdict:
    name = "hub CPU per delivered message / floor"
    cpu = _number(report.get("hub_cpu_ms_per_delivered"))
    if cpu is None and _number(report.get("hub_cpu_seconds")) and report.get("delivered"):  # a report of before
        cpu = report["hub_cpu_seconds"] / report["delivered"] * 1e3
    floor_us = _number((report.get("floor") or {}).get("total_us"))
    if cpu is None or not floor_us:
        return Verdict(name, f"≤ {CPU_TO_FLOOR:g} × floor", "not measured (throughput phase skipped)", False)
    ratio = cpu * 1e3 / floor_us
    return Verdict(name, f"≤ {CPU_TO_FLOOR:g} × floor",
                   f"{ratio:.2f} × floor ({cpu:g} ms / {floor_us / 1e3:.2f} ms)", ratio <= CPU_TO_FLOOR)


def _sustained(report: dict) -> list[Verdict]:
    phase = report.get("sustained")
    names = ("sustained: intake p99", "sustained: end-to-end p99")
    limits = (SUSTAINED_INTAKE_P99_MS, SUSTAINED_END_TO_END_P99_MS)
    if not phase:
        return [_at_most(n, l, "ms", None, "sustained phase skipped") for n, l in zip(names, limits)]
    values = ((phase.get("intake_latency_ms") or {}).get("p99"), (phase.get("end_to_end_latency_ms") or {}).get("p99"))
    rate = _number(phase.get("rate")) or 0
    if rate < SUSTAINED_RATE:  # a latency at a lower rate says nothing of the target's
        return [Verdict(n, f"≤ {l:g} ms at {SUSTAINED_RATE:g}/s",
                        f"not measured at {SUSTAINED_RATE:g}/s ({v} ms at {rate:g}/s offered)", False)
                for n, l, v in zip(names, limits, values)]
    verdicts = [_at_most(n, l, "ms", v, "no latencies") for n, l, v in zip(names, limits, values)]
    for verdict in verdicts:
        verdict.name += f" at {rate:g}/s"
    return verdicts


CHECKS: list[Callable[[dict], Verdict | list[Verdict]]] = [
    _cpu_to_floor,
    lambda r: _at_least(f"accepted messages/s ({r.get('database', 'sqlite')})",
                        ACCEPTED_PER_SECOND.get(r.get("database", "sqlite"), ACCEPTED_PER_SECOND["sqlite"]), "/s",
                        r.get("accepted_per_second"), "throughput phase skipped"),
    lambda r: _at_least("delivered messages/s (NARSA, REST)", DELIVERED_PER_SECOND, "/s",
                        r.get("delivered_per_second"), "throughput phase skipped"),
    _sustained,
    lambda r: _at_least("SOAP delivered messages/s (DGSN)", SOAP_DELIVERED_PER_SECOND, "/s",
                        (r.get("soap") or {}).get("delivered_per_second"), "soap phase skipped"),
    lambda r: _at_least("repatriation cases/s (three partners each)", REPATRIATION_CASES_PER_SECOND, "/s",
                        (r.get("repatriation") or {}).get("cases_per_second"), "repatriation phase skipped"),
]


def judge(report: dict) -> list[Verdict]:
    """Every target, measured against `report` (a bench.json)."""
    verdicts: list[Verdict] = []
    for check in CHECKS:
        outcome = check(report)
        verdicts.extend(outcome if isinstance(outcome, list) else [outcome])
    return verdicts


def print_verdicts(console, verdicts: list[Verdict]) -> int:
    """The table of targets; the missed ones named below it. Returns the exit code: 0 all met, 1 otherwise."""
    from rich.table import Table
    table = Table(title="Targets (issue 16)")
    for column in ("target", "required", "measured", "met"):
        table.add_column(column)
    for v in verdicts:
        table.add_row(v.name, v.target, v.measured, "[green]yes[/]" if v.met else "[red]no[/]")
    console.print(table)
    missed = [v for v in verdicts if not v.met]
    for v in missed:
        console.print(f"[red]missed: {v.name}: {v.measured}, target {v.target}[/]", highlight=False)
    if any(v.measured.startswith("not measured") for v in missed):
        console.print("a target whose phase was not run counts as missed", highlight=False)
    if not missed:
        console.print("[green]all targets met[/]")
    return 1 if missed else 0

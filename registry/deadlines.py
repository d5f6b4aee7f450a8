"""How long each service's partner may take to answer, which open cases are past it, and how long the
partners actually took.

Every service module declares the statuses in which its case waits for an answer (`AWAITING`), who answers
(`PARTNERS`) and a default deadline (`ANSWER_WITHIN`); `config/services.yaml` may set another, read and
validated when the registry starts (a bad value stops it, naming the file and the key):

    services:
      LICENCE_AUTHENTICATION:
        answer_within: 2d        # seconds (a number) or a number with s, m, h or d

The repatriation's deadline is the burial deadline, the setting HUB_REPATRIATION_DEADLINE_SECONDS (it also
escalates the case: registry/services/repatriation.py); config/services.yaml may not set it apart.

A case is overdue while it is in one of its service's AWAITING statuses and was opened longer ago than the
deadline (a repatriation: also whenever it is ESCALATED). Its answer time is, from the case's history, the
time from its opening to the first status outside AWAITING other than FAILED (a repatriation: to each
authority's clearance, one per partner, from the case's documents).
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml
from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import Session

from hub.errors import ConfigError
from hub.store.db import utcnow
from registry import catalogue
from registry.models import Case, CaseDocument, CaseEvent
from registry.statuses import FAILED

FILE = "services.yaml"
REPATRIATION = "REPATRIATION"
REPATRIATION_SETTING = "HUB_REPATRIATION_DEADLINE_SECONDS"
ESCALATED = "ESCALATED"
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 366 * 86400  # a deadline past a year is a typo


def parse_duration(value) -> float:
    """Seconds from 90, "90s", "30m", "6h" or "2d"; ValueError naming what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected seconds or a duration such as 30m, 6h or 2d, not {value!r}")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: a number of seconds, or a number with s, m, h or d "
                             "(30m, 6h, 2d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a deadline must be more than 0 seconds, not {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is more than a year")
    return seconds


def human(seconds: float) -> str:
    """2d, 6h, 30m, 45s: the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Deadline:
    service: str
    seconds: float
    source: str          # where it comes from: config/services.yaml, the service's default, or the setting
    awaiting: frozenset[str]
    partners: tuple[str, ...]

    @property
    def text(self) -> str:
        return human(self.seconds)


class Deadlines(Mapping[str, Deadline]):
    """service -> its Deadline, for every service of the catalogue."""

    def __init__(self, deadlines: dict[str, Deadline]):
        self._by_service = deadlines

    def __getitem__(self, service: str) -> Deadline:
        return self._by_service[service]

    def __iter__(self):
        return iter(self._by_service)

    def __len__(self) -> int:
        return len(self._by_service)


def load(settings) -> Deadlines:
    """The deadline of every service: `config/services.yaml` (optional) over the services' defaults.
    ConfigError naming the file and the key for anything that does not fit."""
    path = Path(settings.config_dir) / FILE
    configured = _read(path)
    modules = catalogue.by_service()
    out: dict[str, Deadline] = {}
    for service, module in modules.items():
        awaiting, partners = frozenset(module.AWAITING), tuple(module.PARTNERS)
        if service == REPATRIATION:
            seconds, source = float(settings.repatriation_deadline_seconds), REPATRIATION_SETTING
        elif service in configured:
            seconds, source = configured[service], f"config/{FILE}"
        else:
            seconds, source = parse_duration(module.ANSWER_WITHIN), "default"
        out[service] = Deadline(service, seconds, source, awaiting, partners)
    return Deadlines(out)


def _read(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "-", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "-", "expected a mapping at the top level")
    for key in data:
        if key != "services":
            raise ConfigError(path, str(key), "unknown key (the file has one key, `services`)")
    services = data.get("services") or {}
    if not isinstance(services, dict):
        raise ConfigError(path, "services", "expected a mapping: service -> {answer_within: ...}")
    known = catalogue.by_service()
    out: dict[str, float] = {}
    for service, entry in services.items():
        key = f"services.{service}"
        if service not in known:
            raise ConfigError(path, key, f"unknown service (services: {', '.join(sorted(known))})")
        if not isinstance(entry, dict):
            raise ConfigError(path, key, "expected a mapping with answer_within")
        for name in entry:
            if name != "answer_within":
                raise ConfigError(path, f"{key}.{name}", "unknown key (a service has `answer_within`)")
        if "answer_within" not in entry:
            raise ConfigError(path, f"{key}.answer_within", "missing (or leave the service out for its default)")
        if service == REPATRIATION:
            raise ConfigError(path, f"{key}.answer_within", f"the repatriation's deadline is the burial deadline, "
                                                            f"{REPATRIATION_SETTING}, which also escalates the "
                                                            "case: set it there")
        try:
            out[service] = parse_duration(entry["answer_within"])
        except ValueError as exc:
            raise ConfigError(path, f"{key}.answer_within", str(exc)) from None
    return out


# -- overdue cases -------------------------------------------------------------------------------------

def overdue_condition(deadlines: Deadlines, now: dt.datetime | None = None):
    """The SQL condition "this case is past its deadline" (over the cases table)."""
    now = now or utcnow()
    clauses = [and_(Case.service == d.service, Case.status.in_(sorted(d.awaiting)),
                    Case.created_at < now - dt.timedelta(seconds=d.seconds)) for d in deadlines.values()]
    if REPATRIATION in deadlines:
        clauses.append(and_(Case.service == REPATRIATION, Case.status == ESCALATED))
    return or_(*clauses) if clauses else false()


def deadline_at(case: Case, deadlines: Deadlines) -> dt.datetime | None:
    """When the case's answer is due (None for a service the registry does not know)."""
    deadline = deadlines.get(case.service)
    if deadline is None:
        return None
    fixed = (case.details or {}).get("deadline_at") if case.service == REPATRIATION else None
    if fixed:  # a repatriation's deadline is fixed when it opens
        try:
            return dt.datetime.fromisoformat(fixed)
        except (TypeError, ValueError):
            pass
    return case.created_at + dt.timedelta(seconds=deadline.seconds)


def is_overdue(case: Case, deadlines: Deadlines, now: dt.datetime | None = None) -> bool:
    deadline = deadlines.get(case.service)
    if deadline is None or case.status not in deadline.awaiting:
        return False
    if case.service == REPATRIATION and case.status == ESCALATED:
        return True
    return case.created_at + dt.timedelta(seconds=deadline.seconds) < (now or utcnow())


def overdue_counts(session: Session, deadlines: Deadlines, *, post_code: str | None = None) -> dict[str, int]:
    """service -> how many of its cases are past their deadline (of one post, when given)."""
    query = select(Case.service, func.count()).where(overdue_condition(deadlines)).group_by(Case.service)
    if post_code is not None:
        query = query.where(Case.post_code == post_code)
    return {service: n for service, n in session.execute(query)}


def overdue_cases(session: Session, deadlines: Deadlines, *, post_code: str | None = None,
                  limit: int = 500) -> list[dict]:
    """The cases past their deadline, the longest overdue first: reference, service, post_code, status,
    deadline_at (UTC)."""
    query = select(Case).where(overdue_condition(deadlines)).order_by(Case.created_at, Case.id).limit(limit)
    if post_code is not None:
        query = query.where(Case.post_code == post_code)
    found = [{"reference": c.reference, "service": c.service, "post_code": c.post_code, "status": c.status,
              "deadline_at": deadline_at(c, deadlines)} for c in session.scalars(query)]
    return sorted(found, key=lambda item: item["deadline_at"])


# -- answer times ---------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0-100) of `values` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def answer_times(session: Session, deadlines: Deadlines, *, days: int = 30, post_code: str | None = None,
                 now: dt.datetime | None = None) -> list[dict]:
    """Per service and partner, over the cases opened in the last `days`: how many were answered, the p50 and
    p95 of their answer times in seconds against the deadline, how many within it, and how many still wait
    (of which how many are past it)."""
    now = now or utcnow()
    since = now - dt.timedelta(days=days)
    rows = []
    for deadline in deadlines.values():
        scope = [Case.service == deadline.service, Case.created_at >= since]
        if post_code is not None:
            scope.append(Case.post_code == post_code)
        per_partner = _answers_by_partner(session, deadline, scope)
        waiting = session.scalar(select(func.count()).select_from(Case).where(
            *scope, Case.status.in_(sorted(deadline.awaiting)))) or 0
        late = session.scalar(select(func.count()).select_from(Case).where(
            *scope, overdue_condition(Deadlines({deadline.service: deadline}), now))) or 0
        for partner in deadline.partners:
            times = per_partner.get(partner, [])
            rows.append({"service": deadline.service, "partner": partner, "deadline_seconds": deadline.seconds,
                         "deadline": deadline.text, "answered": len(times),
                         "p50_seconds": percentile(times, 50), "p95_seconds": percentile(times, 95),
                         "within_deadline": sum(1 for t in times if t <= deadline.seconds),
                         "waiting": waiting, "overdue": late, "days": days})
    return rows


def _answers_by_partner(session: Session, deadline: Deadline, scope: list) -> dict[str, list[float]]:
    if deadline.service == REPATRIATION:  # each authority's clearance, kept as a document of the case
        query = (select(CaseDocument.kind, Case.created_at, func.min(CaseDocument.received_at))
                 .join(Case, CaseDocument.case_id == Case.id)
                 .where(*scope, CaseDocument.kind.in_([f"CLEARANCE_{p}" for p in deadline.partners]))
                 .group_by(Case.id, Case.created_at, CaseDocument.kind))
        out: dict[str, list[float]] = {}
        for kind, opened, answered in session.execute(query):
            out.setdefault(kind.removeprefix("CLEARANCE_"), []).append((answered - opened).total_seconds())
        return out
    answered = sorted(deadline.awaiting | {FAILED})
    query = (select(Case.created_at, func.min(CaseEvent.at)).join(CaseEvent, CaseEvent.case_id == Case.id)
             .where(*scope, CaseEvent.status.notin_(answered)).group_by(Case.id, Case.created_at))
    times = [(at - opened).total_seconds() for opened, at in session.execute(query)]
    return {partner: times for partner in deadline.partners}

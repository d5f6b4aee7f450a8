"""Throughput scenarios beyond the NARSA REST route: SOAP (DGSN) and the repatriation fan-out.

    soap          N PassportApplication (config/routes/passport.yaml): REGISTRY -> DGSN over SOAP, mapped
                  and signed by the hub; DGSN answers synchronously with a receipt
                  (PassportApplicationAcknowledged) that the hub takes in for the registry.
    repatriation  N RepatriationRequest (config/routes/repatriation.yaml), each fanned out to SANTE,
                  ETAT_CIVIL and DGSN, each answering synchronously with a clearance for the registry.

A message is done when the exchange is, as its case's people see it: its deliveries DELIVERED and the
partners' answers delivered to the registry, which has applied them (`completed_cases`). Counting the
deliveries to the partners alone rewarded a hub that let the registry's answers lag behind: in one run, the
last answer reached the registry 8 s after the last delivery. Each phase reports these per second and the
hub's CPU per message. The load is the same closed loop as
the throughput phase (bench/load.py), on messages pre-signed beforehand.

The answers are delivered to the registry, where they move the cases on as in production: before the load,
`open_cases` opens the case each request belongs to, as the registry leaves it once it has sent the request
(its service's SENT_STATUS: AWAITING_PARTNER, AWAITING_CLEARANCES), and waits until the hub has sealed their
history. DGSN's receipt then takes a passport case to ACKNOWLEDGED; the three clearances take a repatriation
case to AUTHORISED, each kept as a document of the case. The report counts the answers
(`answers_to_registry`) and the cases at their final status of the scenario (`cases_moved_on`).

The requests themselves are the partner POST of the throughput phase (pre-signed by REGISTRY's key), not the
registry's own API, which builds and signs each request inside the hub: the cases are written in bulk so that
the phase measures the exchange, not the registry's case creation.
"""
from __future__ import annotations

import datetime as dt
import importlib
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                      # bench/messages.py KINDS
    partners: tuple[str, ...]      # the deliveries each message makes
    sandboxes: tuple[str, ...]     # `python -m sandbox NAME` processes it needs
    what: str
    service: str                   # the registry's service module (registry/services/) of its cases
    answered: str                  # the status its case reaches when every partner has answered


SCENARIOS = {
    "soap": Scenario("soap", "passport", ("DGSN",), ("dgsn",), "PassportApplication to DGSN (SOAP)",
                     "passport", "ACKNOWLEDGED"),
    "repatriation": Scenario("repatriation", "repatriation", ("SANTE", "ETAT_CIVIL", "DGSN"),
                             ("sante", "etat_civil", "dgsn"), "RepatriationRequest to SANTE, ETAT_CIVIL and DGSN",
                             "repatriation", "AUTHORISED"),
}

# sandbox name -> (partner code, the hub's environment variable for its URL)
SANDBOXES = {"narsa": ("NARSA", "HUB_NARSA_URL"), "dgsn": ("DGSN", "HUB_DGSN_URL"),
             "sante": ("SANTE", "HUB_SANTE_URL"), "etat_civil": ("ETAT_CIVIL", "HUB_ETAT_CIVIL_URL")}


def _service(scenario: Scenario):
    return importlib.import_module(f"registry.services.{scenario.service}")


def open_cases(engine, scenario: Scenario, run_id: str, count: int, *, timeout: float = 300,
               on_progress: Callable[[int], None] | None = None) -> None:
    """Open the registry's case of each of the scenario's `count` requests (bench/messages.py `reference`), in
    the status its request leaves it in, then wait until the hub has sealed their history (the sealer's work
    for them is done before the phase's CPU is counted). `on_progress(unsealed)` while waiting."""
    from sqlalchemy import func, insert, select, text

    from bench import messages
    from hub.store.db import utcnow
    from registry.models import Case, CaseEvent
    module = _service(scenario)
    now = utcnow()
    # the details the registry's jobs read (a repatriation's burial deadline: registry/services/repatriation.py)
    details = {"deadline_at": (now + dt.timedelta(hours=6)).isoformat()}
    rows = [{"reference": (ref := messages.reference(run_id, i, scenario.kind)), "service": module.SERVICE,
             "post_code": "FR-PARIS", "status": module.SENT_STATUS, "details": details, "attempt": 1,
             "request_message_id": f"REGISTRY-{ref}", "created_at": now, "updated_at": now} for i in range(count)]
    prefix = messages.reference(run_id, 0, scenario.kind)[:-8]
    with engine.begin() as connection:
        connection.execute(insert(Case), rows)
        connection.execute(text("INSERT INTO case_events (case_id, at, status, actor, note) "
                                "SELECT id, created_at, status, 'hub', 'request sent (benchmark)' FROM cases "
                                "WHERE reference LIKE :prefix"), {"prefix": prefix + "%"})
    unsealed = select(func.count()).select_from(CaseEvent).where(CaseEvent.chain_seq.is_(None))
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            left = connection.execute(unsealed).scalar_one()
        if on_progress:
            on_progress(left)
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} case events still unsealed after {timeout:.0f} s: is the hub's sealer running?")
        time.sleep(0.2)


def cases_moved_on(engine, scenario: Scenario, run_id: str) -> dict[str, int]:
    """The scenario's cases by status, after the phase."""
    from sqlalchemy import func, select

    from bench import messages
    from registry.models import Case
    prefix = messages.reference(run_id, 0, scenario.kind)[:-8]
    with engine.connect() as connection:
        return dict(connection.execute(select(Case.status, func.count()).where(Case.reference.like(prefix + "%"))
                                       .group_by(Case.status)).all())


def completed_cases(engine, after_delivery_id: int, partners: tuple[str, ...],
                    answers_to: str = "REGISTRY") -> tuple[int, float | None]:
    """(messages done, the epoch of the last delivery that completed one) for the deliveries after
    `after_delivery_id`. Done: its deliveries to every one of `partners` DELIVERED, and each partner's answer
    to it DELIVERED to `answers_to` (the registry, which has applied it)."""
    from sqlalchemy import bindparam, text

    from hub.store.db import UtcDateTime
    sent = text("SELECT message_pk, delivered_at FROM deliveries WHERE id > :after AND state = 'DELIVERED' "
                "AND partner IN :partners").bindparams(bindparam("partners", expanding=True)).columns(
        delivered_at=UtcDateTime())
    answered = text("SELECT asked.id, d.delivered_at FROM deliveries d "
                    "JOIN messages answer ON answer.id = d.message_pk "
                    "JOIN messages asked ON asked.sender = answer.recipient AND asked.message_id = answer.in_reply_to "
                    "WHERE d.id > :after AND d.state = 'DELIVERED' AND d.partner = :answers_to "
                    "AND answer.sender IN :partners").bindparams(bindparam("partners", expanding=True)).columns(
        delivered_at=UtcDateTime())
    deliveries: dict[int, list[float]] = {}
    answers: dict[int, list[float]] = {}
    parameters = {"after": after_delivery_id, "partners": list(partners), "answers_to": answers_to}
    with engine.connect() as connection:
        for found, query in ((deliveries, sent), (answers, answered)):
            for message_pk, delivered_at in connection.execute(query, parameters):
                found.setdefault(message_pk, []).append(delivered_at.timestamp())
    done = [max(times + answers[message_pk]) for message_pk, times in deliveries.items()
            if len(times) == len(partners) and len(answers.get(message_pk, ())) == len(partners)]
    return len(done), (max(done) if done else None)


def report(scenario: Scenario, load: dict, outcome: dict, hub_cpu: float, sandbox_cpu: float,
           cases: tuple[int, float | None], statuses: dict[str, int], percentiles, *,
           database_cpu: float | None = None) -> dict:
    """The scenario's part of the JSON report. CPU per message is per request done: for the repatriation, per
    case (three deliveries, three answers taken in and handed to the registry). `database_cpu`: PostgreSQL's, when
    it runs on this machine (None on SQLite)."""
    by_partner: dict[str, dict[str, int]] = {}
    for row in outcome["every"]:
        by_partner.setdefault(row["partner"], {})[row["state"]] = row["count"]
    done, last = cases
    window = (last - load["wall_start"]) if last else None
    delivered = sum(by_partner.get(p, {}).get("DELIVERED", 0) for p in scenario.partners)
    answers = by_partner.get("REGISTRY", {})
    result = {
        "what": scenario.what,
        "sent": load["sent"], "accepted": load["accepted"], "statuses": load["statuses"], "errors": load["errors"],
        "concurrency": load["concurrency"],
        "deliveries_by_partner": by_partner,
        "delivered": delivered,
        "stalled": outcome["stalled"],
        "send_seconds": round(load["elapsed_seconds"], 3),
        "delivery_seconds": round(window, 3) if window else None,
        "accepted_per_second": round(load["accepted"] / load["elapsed_seconds"], 1) if load["elapsed_seconds"] else 0.0,
        "intake_latency_ms": percentiles(sorted(x for x in load["latencies"] if x > 0)),
        "hub_cpu_seconds": round(hub_cpu, 3),
        "hub_cpu_ms_per_message": round(hub_cpu / done * 1e3, 3) if done else None,
        "sandbox_cpu_ms_per_message": round(sandbox_cpu / done * 1e3, 3) if done else None,
        "database_cpu_ms_per_message": (round(database_cpu / done * 1e3, 3) if done and database_cpu is not None
                                        else None),
        "answers_to_registry": answers,
        "answers_dead_lettered": answers.get("DEAD", 0),
        "case_statuses": statuses,
        "cases_moved_on": statuses.get(scenario.answered, 0),
    }
    if len(scenario.partners) == 1:
        result["delivered_per_second"] = round(done / window, 1) if window and window > 0 else 0.0
    else:
        result["cases_done"] = done
        result["cases_per_second"] = round(done / window, 1) if window and window > 0 else 0.0
        result["delivered_per_second"] = round(delivered / window, 1) if window and window > 0 else 0.0
    return result

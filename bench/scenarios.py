"""Throughput scenarios beyond the NARSA REST route: SOAP (DGSN) and the repatriation fan-out.

    soap          N PassportApplication (config/routes/passport.yaml): REGISTRY -> DGSN over SOAP, mapped
                  and signed by the hub; DGSN answers synchronously with a receipt
                  (PassportApplicationAcknowledged) that the hub takes in for the registry.
    repatriation  N RepatriationRequest (config/routes/repatriation.yaml), each fanned out to SANTE,
                  ETAT_CIVIL and DGSN, each answering synchronously with a clearance for the registry;
                  a case is done when its three deliveries are DELIVERED.

Each reports delivered per second and the hub's CPU per message. The load is the same closed loop as
the throughput phase (bench/load.py), on messages pre-signed beforehand.

The answers are delivered to the registry, which has no case for the benchmark's references: it
dead-letters them ("no case with reference ..."), as it does NARSA's callbacks when `--callbacks` lets
them through. They are reported as such (`answers_to_registry`), not hidden: opening real cases first
would mean going through the registry's own API, where the registry builds and signs the request inside
the hub, a different intake path from the partner POST measured here, or writing registry rows behind
its back. The hub's work per message (intake, mapping, signing, the partner call, taking the answer in,
handing it to the registry) is the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                      # bench/messages.py KINDS
    partners: tuple[str, ...]      # the deliveries each message makes
    sandboxes: tuple[str, ...]     # `python -m sandbox NAME` processes it needs
    what: str


SCENARIOS = {
    "soap": Scenario("soap", "passport", ("DGSN",), ("dgsn",), "PassportApplication to DGSN (SOAP)"),
    "repatriation": Scenario("repatriation", "repatriation", ("SANTE", "ETAT_CIVIL", "DGSN"),
                             ("sante", "etat_civil", "dgsn"), "RepatriationRequest to SANTE, ETAT_CIVIL and DGSN"),
}

# sandbox name -> (partner code, the hub's environment variable for its URL)
SANDBOXES = {"narsa": ("NARSA", "HUB_NARSA_URL"), "dgsn": ("DGSN", "HUB_DGSN_URL"),
             "sante": ("SANTE", "HUB_SANTE_URL"), "etat_civil": ("ETAT_CIVIL", "HUB_ETAT_CIVIL_URL")}


def completed_cases(engine, after_delivery_id: int, partners: tuple[str, ...]) -> tuple[int, float | None]:
    """(messages whose deliveries to every one of `partners` are DELIVERED, the epoch of the last such delivery
    among them) for the deliveries after `after_delivery_id`."""
    from sqlalchemy import bindparam, text

    from hub.store.db import UtcDateTime
    query = text("SELECT message_pk, delivered_at FROM deliveries WHERE id > :after AND state = 'DELIVERED' "
                 "AND partner IN :partners").bindparams(bindparam("partners", expanding=True)).columns(
        delivered_at=UtcDateTime())
    per_message: dict[int, list[float]] = {}
    with engine.connect() as connection:
        for message_pk, delivered_at in connection.execute(query, {"after": after_delivery_id,
                                                                    "partners": list(partners)}):
            per_message.setdefault(message_pk, []).append(delivered_at.timestamp())
    done = [max(times) for times in per_message.values() if len(times) == len(partners)]
    return len(done), (max(done) if done else None)


def report(scenario: Scenario, load: dict, outcome: dict, hub_cpu: float, sandbox_cpu: float,
           cases: tuple[int, float | None], percentiles) -> dict:
    """The scenario's part of the JSON report. CPU per message is per request done: for the repatriation, per
    case (three deliveries, three answers taken in and handed to the registry)."""
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
        "answers_to_registry": answers,
        "answers_dead_lettered": answers.get("DEAD", 0),
    }
    if len(scenario.partners) == 1:
        result["delivered_per_second"] = round(done / window, 1) if window and window > 0 else 0.0
    else:
        result["cases_done"] = done
        result["cases_per_second"] = round(done / window, 1) if window and window > 0 else 0.0
        result["delivered_per_second"] = round(delivered / window, 1) if window and window > 0 else 0.0
    return result

"""Per-partner isolation on real processes: a slow partner does not hold the others up (each partner has at
most its `max_in_flight`, else HUB_PARTNER_CONCURRENCY, deliveries in flight), and a failing partner's circuit
opens, stops the attempts while open, and closes again once the partner answers, with everything delivered once.

The slow partner answers in max(3, 5 x HUB_FAULT_SCALE) seconds (5 s at full length, as the issue states)."""
from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import time

import httpx
import pytest

from conftest import wait_for, write_config
from hub.delivery.workers import DeliveryWorkers
from test_civil_status_flows import EXTRACT_FINAL, open_extract, register
from test_licence_flow import FINAL, open_case

SCALE = float(os.environ.get("HUB_FAULT_SCALE", "0.1"))
SLOW_SECONDS = max(3.0, 5.0 * SCALE)
BREAKER_FAILURES, BREAKER_SECONDS = 3, 2


@pytest.fixture
def settings(settings, tmp_path):
    """Two deliveries in flight to NARSA (its `max_in_flight`; the others have the default), a breaker that
    opens after 3 failures for 2 s, partners that may take longer than the slow one to answer, and retries
    enough that the breaker decides, not them."""
    config = write_config(tmp_path / "config", retry={"max_attempts": 30, "base_delay_seconds": 0.2,
                                                     "max_delay_seconds": 1})
    for path in (config / "partners").glob("*.yaml"):
        text = path.read_text(encoding="utf-8").replace("timeout_seconds: 5", "timeout_seconds: 15")
        path.write_text(text + ("max_in_flight: 2\n" if path.stem == "NARSA" else ""), encoding="utf-8")
    return settings.replace(config_dir=config, delivery_workers=4, breaker_failures=BREAKER_FAILURES,
                            breaker_seconds=BREAKER_SECONDS)


def metric(hub_url: str, name: str, partner: str) -> float:
    text = httpx.get(f"{hub_url}/metrics", timeout=5).text
    found = re.search(rf'^{name}\{{partner="{partner}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def latency(message: dict) -> float | None:
    """Seconds from acceptance to delivery, by the hub's own clock (None while not delivered)."""
    [delivery] = message["deliveries"]
    if not delivery["delivered_at"]:
        return None
    return (dt.datetime.fromisoformat(delivery["delivered_at"]) -
            dt.datetime.fromisoformat(message["received_at"])).total_seconds()


def messages_of(client, type_: str) -> list[dict]:
    items = client.get("/api/v1/messages", params={"type": type_, "limit": 100}).json()["items"]
    return [client.get(f"/api/v1/messages/{m['id']}").json() for m in items]


def extract_latencies(client, references: list[str]) -> list[float]:
    for reference in references:
        wait_for(lambda: client.get(f"/api/v1/cases/{reference}").json()["status"] in EXTRACT_FINAL, 30,
                 interval=0.05, what=f"extract case {reference} final")
    by_case = {m["correlation_id"]: m for m in messages_of(client, "CivilStatusExtractRequest")}
    return [latency(by_case[reference]) for reference in references]


def test_slow_partner_does_not_delay_the_others(running_hub, start_sandbox, client):
    narsa = start_sandbox("narsa", running_hub.url)
    etat_civil = start_sandbox("etat_civil", running_hub.url, extra_args=["--answer-delay", "0.05"])
    applicant = register(client)

    baseline_refs = [open_extract(client, applicant, f"10{i}") for i in range(4)]
    baseline = extract_latencies(client, baseline_refs)

    narsa.behave(mode="slow", delay_seconds=SLOW_SECONDS)
    slow_refs = [open_case(client, f"12/34567{i % 7}") for i in range(6)]
    wait_for(lambda: metric(running_hub.url, "hub_partner_deliveries_in_flight", "NARSA") == 2, 10,
             what="two NARSA deliveries in flight")
    started = time.monotonic()
    during_refs = []
    for i in range(8):
        during_refs.append(open_extract(client, applicant, f"20{i}"))
        time.sleep(0.1)
    during = extract_latencies(client, during_refs)
    fast_done = time.monotonic() - started
    in_flight = metric(running_hub.url, "hub_partner_deliveries_in_flight", "NARSA")
    slow_pending = [m["id"] for m in messages_of(client, "LicenceAuthenticationRequest") if latency(m) is None]

    for reference in slow_refs:
        wait_for(lambda: client.get(f"/api/v1/cases/{reference}").json()["status"] in FINAL, 60, interval=0.2,
                 what=f"licence case {reference} final")
    slow = [latency(m) for m in messages_of(client, "LicenceAuthenticationRequest")]
    print(f"\nisolation: NARSA answering in {SLOW_SECONDS:g} s, 2 in flight at most; ETAT_CIVIL latency "
          f"before: median {statistics.median(baseline):.3f} s max {max(baseline):.3f} s "
          f"({len(baseline)} messages); while NARSA was busy: median {statistics.median(during):.3f} s "
          f"max {max(during):.3f} s ({len(during)} messages, all delivered {fast_done:.1f} s after the slow "
          f"load began, NARSA then had {in_flight:g} in flight and {len(slow_pending)} of {len(slow_refs)} "
          f"not yet delivered); NARSA latencies {', '.join(f'{s:.1f}' for s in sorted(slow))} s")
    assert slow_pending, "the slow partner finished before the fast one: nothing was shown"
    assert in_flight <= 2
    # waiting behind the slow partner would take one of its answers (SLOW_SECONDS) at least; the typical latency
    # stays as before (one message of eight took 1.15 s once, on a machine busy with the other test worker)
    assert max(during) < SLOW_SECONDS / 2, "the fast partner waited for the slow one"
    assert statistics.median(during) < max(1.0, 3 * max(baseline))
    assert min(slow) >= SLOW_SECONDS * 0.9 and max(slow) >= SLOW_SECONDS * 2.5   # two at a time, not six
    assert narsa.stats()["received"] == len(slow_refs) and etat_civil.stats()["received"] >= 12


def test_failing_partner_opens_its_circuit_then_recovers(running_hub, sandbox_factory, client):
    narsa = sandbox_factory(running_hub.url)
    narsa.behave(mode="fail", status=503)
    opened_before = metric(running_hub.url, "hub_partner_circuit_opened_total", "NARSA")  # counts per process
    references = [open_case(client, f"12/34567{i}") for i in range(4)]

    wait_for(lambda: metric(running_hub.url, "hub_partner_circuit_open", "NARSA") == 1, 15,
             interval=0.05, what="NARSA's circuit to open")
    opened_at = time.monotonic()
    # a send already under way when the circuit opened ends now: it was made before, not while open
    wait_for(lambda: metric(running_hub.url, "hub_partner_deliveries_in_flight", "NARSA") == 0, 5, interval=0.02,
             what="the sends under way when the circuit opened to end")
    failed_at_open = narsa.stats().get("failed_on_purpose", 0)
    attempts_at_open = sum(m["deliveries"][0]["attempts"] for m in messages_of(client, "LicenceAuthenticationRequest"))
    time.sleep(max(0.0, BREAKER_SECONDS * 0.75 - (time.monotonic() - opened_at)))
    failed_while_open = narsa.stats().get("failed_on_purpose", 0)
    attempts_while_open = sum(m["deliveries"][0]["attempts"]
                              for m in messages_of(client, "LicenceAuthenticationRequest"))
    pending = [m["state"] for m in messages_of(client, "LicenceAuthenticationRequest")]
    # the wait over, ONE trial delivery; it fails (the partner still fails): open again, nothing more sent
    wait_for(lambda: narsa.stats().get("failed_on_purpose", 0) > failed_while_open, BREAKER_SECONDS + 5,
             interval=0.05, what="the half-open trial")
    time.sleep(BREAKER_SECONDS / 4)
    failed_after_trial = narsa.stats().get("failed_on_purpose", 0)
    reopened = metric(running_hub.url, "hub_partner_circuit_open", "NARSA")

    narsa.behave(mode="normal")
    for reference in references:
        wait_for(lambda: client.get(f"/api/v1/cases/{reference}").json()["status"] in FINAL, 30, interval=0.2,
                 what=f"case {reference} final")
    wait_for(lambda: metric(running_hub.url, "hub_partner_circuit_open", "NARSA") == 0, 10,
             what="NARSA's circuit to close")
    stats = narsa.stats()
    opened = metric(running_hub.url, "hub_partner_circuit_opened_total", "NARSA") - opened_before
    statuses = [client.get(f"/api/v1/cases/{r}").json()["status"] for r in references]
    print(f"\nbreaker: opened after {failed_at_open} failed requests (threshold {BREAKER_FAILURES}); "
          f"{failed_while_open - failed_at_open} requests and {attempts_while_open - attempts_at_open} attempts "
          f"during the first {BREAKER_SECONDS * 0.75:g} s open; {failed_after_trial - failed_while_open} "
          f"trial after {BREAKER_SECONDS} s, failed, circuit open again ({reopened:g}); opened {opened:g} times; "
          f"{stats.get('failed_on_purpose', 0)} failed requests in all; then {stats['received']} received, "
          f"{stats['duplicates']} duplicates, {stats['results_sent']} answers; cases {statuses}")
    assert set(pending) == {"ACCEPTED"}                          # waiting, not dead-lettered
    assert failed_while_open == failed_at_open                   # no request while the circuit was open...
    assert attempts_while_open == attempts_at_open               # ...and no attempt burned
    assert failed_at_open <= BREAKER_FAILURES + 1                # at most one more was in flight when it opened
    assert failed_after_trial == failed_while_open + 1 and reopened == 1   # one trial, failed: open again
    assert opened == 2
    assert "FAILED" not in statuses
    assert stats["received"] == len(references) and len(narsa.received()) == len(references)
    assert stats["results_sent"] == len(references)


def test_a_partners_own_limit_caps_that_partner_only(hub):
    workers = DeliveryWorkers(hub)  # not started: its limits and thread count only
    others = {limit for partner, limit in workers.slots.limits.items() if partner != "NARSA"}
    assert workers.slots.limits["NARSA"] == 2 and others == {hub.settings.partner_concurrency}
    assert workers.count == sum(workers.slots.limits.values())  # every partner can have its full share at once
    assert [workers.slots.take("NARSA") for _ in range(3)] == [True, True, False]
    assert workers.slots.take("ETAT_CIVIL") and workers.slots.full() == {"NARSA"}

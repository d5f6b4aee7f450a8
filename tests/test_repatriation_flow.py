"""Repatriation of remains end to end: one request fans out to SANTE (REST), ETAT_CIVIL (REST) and DGSN
(SOAP), real sandbox processes on loopback; the case is decided from the three answers."""
from __future__ import annotations

import httpx
import pytest

from conftest import bearer, wait_for, write_config
from support import register_citizen
from registry.services.repatriation import escalate_overdue

FINAL = {"AUTHORISED", "REFUSED", "FAILED"}
AUTHORITIES = {"SANTE", "ETAT_CIVIL", "DGSN"}


@pytest.fixture
def settings(settings, tmp_path):
    # A short deadline, so that an authority that does not answer escalates the case within the test,
    # and retries that outlast it.
    retry = {"max_attempts": 100, "base_delay_seconds": 0.2, "max_delay_seconds": 0.5}
    return settings.replace(config_dir=write_config(tmp_path / "config-patient", retry=retry),
                            repatriation_deadline_seconds=3)


@pytest.fixture
def hub_and_partners(running_hub, start_sandbox):
    boxes = start_sandbox(["sante", "etat_civil", "dgsn"], running_hub.url)
    with httpx.Client(base_url=running_hub.url, timeout=15,
                      headers=bearer(running_hub.mint_token("administrator"))) as client:
        yield running_hub, client, boxes


def register(client) -> str:
    return register_citizen(client, given_name_latin="Rachid", family_name_latin="Bennani", given_name_arabic="رشيد",
                            family_name_arabic="بناني", birth_date="1951-02-03", cnie="J654321")["registration_id"]


def repatriation(client, registration_id: str, *, cause: str = "I21.9", commune: str = "1411011",
                 seal: str = "SCL-204518") -> str:
    response = client.post("/api/v1/cases/repatriation", json={
        "registration_id": registration_id,
        "death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": cause,
                  "cause_text": "Cause médicale confidentielle"},
        "burial": {"commune": commune, "commune_name": "Agadir"},
        "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "Royal Air Maroc",
                      "seal_number": seal}})
    assert response.status_code == 201, response.text
    return response.json()["reference"]


def case(client, reference: str) -> dict:
    return client.get(f"/api/v1/cases/{reference}").json()


def wait_final(client, reference: str) -> dict:
    return wait_for(lambda: (c := case(client, reference))["status"] in FINAL and c, 40,
                    what=f"case {reference} decided")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_all_three_grant_then_authorised_and_cause_of_death_reaches_sante_only(hub_and_partners):
    hub, client, boxes = hub_and_partners
    reference = repatriation(client, register(client))
    decided = wait_final(client, reference)

    assert decided["status"] == "AUTHORISED"
    assert set(decided["outcome"]["clearances"]) == AUTHORITIES
    assert {c["decision"] for c in decided["outcome"]["clearances"].values()} == {"GRANTED"}
    assert {d["kind"] for d in decided["documents"]} == {f"CLEARANCE_{a}" for a in AUTHORITIES}
    # Minimisation: the cause of death (health data) is in SANTE's copy and nowhere else.
    received = {name: b"".join(p.read_bytes() for p in box.received(name.upper())) for name, box in boxes.items()}
    assert all(received.values()), "every authority received the request"
    assert b"I21.9" in received["sante"] and "confidentielle".encode() in received["sante"]
    for other in ("etat_civil", "dgsn"):
        assert b"I21.9" not in received[other] and "confidentielle".encode() not in received[other]


@pytest.mark.parametrize("variant, refused_by, reason", [
    ({"cause": "A41.9"}, "SANTE", "RISQUE_CONTAGION"),
    ({"commune": "1411019"}, "ETAT_CIVIL", "COMMUNE_INCONNUE"),
    ({"seal": "SCL-204529"}, "DGSN", "SCELLE_NON_CONFORME"),
], ids=["sante", "etat-civil", "dgsn"])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_refusal_refuses_the_case(hub_and_partners, variant, refused_by, reason):
    hub, client, boxes = hub_and_partners
    reference = repatriation(client, register(client), **variant)
    decided = wait_final(client, reference)

    assert decided["status"] == "REFUSED"
    assert decided["outcome"]["clearances"][refused_by]["decision"] == "REFUSED"
    assert decided["outcome"]["clearances"][refused_by]["reason"] == reason
    assert any(e["status"] == "REFUSED" and e["actor"] == refused_by for e in decided["history"])


def test_an_authority_silent_past_the_deadline_escalates_then_its_answer_decides(hub_and_partners):
    hub, client, boxes = hub_and_partners
    boxes["dgsn"].behave(mode="fail", status=503)
    reference = repatriation(client, register(client))
    wait_for(lambda: set((case(client, reference)["outcome"] or {}).get("clearances", {})) == {"SANTE", "ETAT_CIVIL"},
             30, what="SANTE and ETAT_CIVIL answers")
    assert case(client, reference)["status"] == "AWAITING_CLEARANCES"

    wait_for(lambda: escalate_overdue(hub.apps["registry"]) or case(client, reference)["status"] == "ESCALATED", 10,
             what="the deadline to pass")
    escalated = case(client, reference)
    assert escalated["status"] == "ESCALATED"
    assert "DGSN" in escalated["history"][-1]["note"]

    boxes["dgsn"].behave(mode="normal")
    assert wait_final(client, reference)["status"] == "AUTHORISED"

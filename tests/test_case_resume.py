"""A resent message's case continues: a request dead-lettered (its partner unreachable) fails its case; once
the partner is back and the message is resent (POST /api/v1/messages/{id}/resend, as the console does), the
case waits for the partner again and its late answer takes it to its final status, and the case history
records it. Real
sandbox partners: NARSA for a licence; for a repatriation SANTE and ETAT_CIVIL answer at once while DGSN is
down, and DGSN's late clearance decides the case."""
from __future__ import annotations

import re

import pytest

from conftest import wait_for, write_config
from console_support import ConsoleClient, make_user
from registry.history import problems
from support import open_repatriation_case, register_citizen


@pytest.fixture
def settings(settings, tmp_path):
    """Partners tried twice before a delivery is dead-lettered: the test waits for the dead letters."""
    quick = {"max_attempts": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 0.2}
    return settings.replace(config_dir=write_config(tmp_path / "config-quick", retry=quick))


def open_licence_case(client, number: str) -> str:
    citizen = register_citizen(client, post_code="FR-PARIS", given_name_latin="Khadija", family_name_latin="Alaoui",
                               given_name_arabic="خديجة", family_name_arabic="العلوي", birth_date="1979-03-02",
                               sex="F", cnie="J123456")
    case = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": citizen["registration_id"],
        "licence": {"number": number, "categories": ["B"], "issue_date": "2005-09-01"}})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def case_in(client, reference: str, status: str) -> dict | None:
    case = client.get(f"/api/v1/cases/{reference}").json()
    return case if case["status"] == status else None


def resend(client, message_id: str) -> None:
    resent = client.post(f"/api/v1/messages/{message_id}/resend")
    assert resent.status_code == 200 and resent.json()["resent"] == 1, resent.text


def test_failed_cases_take_the_late_answers_to_their_resent_requests(running_hub, client, start_sandbox):
    # NARSA and DGSN are not running yet: their deliveries are refused until the retry policy gives up
    start_sandbox(["sante", "etat_civil"], running_hub.url)
    licence = open_licence_case(client, "12/345673")  # the sandbox finds this licence authentic
    repatriation = open_repatriation_case(client)
    for reference in (licence, repatriation):
        failed = wait_for(lambda: case_in(client, reference, "FAILED"), 40, what=f"{reference} to fail")
        assert "connection refused" in failed["history"][-1]["note"], failed["history"]
        assert client.get(f"/api/v1/messages/REGISTRY-{reference}").json()["state"] == "DEAD"
    wait_for(lambda: set(client.get(f"/api/v1/cases/{repatriation}").json()["outcome"]["clearances"])
             == {"SANTE", "ETAT_CIVIL"}, 20, what="SANTE's and ETAT_CIVIL's clearances")

    partners = start_sandbox(["narsa", "dgsn"], running_hub.url)
    resend(client, f"REGISTRY-{licence}")
    resend(client, f"REGISTRY-{repatriation}")  # its one dead delivery: DGSN's
    case = wait_for(lambda: case_in(client, licence, "AUTHENTIC"), 30, what="NARSA's late verdict")
    decided = wait_for(lambda: case_in(client, repatriation, "AUTHORISED"), 30, what="DGSN's late clearance")

    # the resend took the case back to waiting for NARSA; NARSA's verdict then closed it as on a first try
    assert [(h["status"], h["actor"]) for h in case["history"]][1:] == [
        ("AWAITING_PARTNER", "hub"), ("FAILED", "hub"), ("AWAITING_PARTNER", "hub"), ("AUTHENTIC", "NARSA")]
    assert case["history"][-2]["note"].startswith(f"REGISTRY-{licence} resent by ")
    assert case["history"][-1]["note"].startswith("verdict AUTHENTIC")
    assert case["partner_reference"].startswith("NARSA-")
    assert [d["kind"] for d in case["documents"]] == ["NARSA_ATTESTATION"]
    assert partners["narsa"].stats()["received"] == 1
    assert client.get(f"/api/v1/messages/REGISTRY-{licence}").json()["state"] == "DELIVERED"

    statuses = [h["status"] for h in decided["history"]]
    assert statuses[-3:] == ["FAILED", "AWAITING_CLEARANCES", "AUTHORISED"] and "DGSN" in decided["history"][-3]["note"]
    assert decided["history"][-1]["note"] == "SANTE, ETAT_CIVIL and DGSN have all granted"
    assert {d["kind"] for d in decided["documents"]} == {"CLEARANCE_SANTE", "CLEARANCE_ETAT_CIVIL", "CLEARANCE_DGSN"}
    assert {c["decision"] for c in decided["outcome"]["clearances"].values()} == {"GRANTED"}
    with running_hub.hub.sessions() as session:  # what `hub evidence verify` checks of the case history
        assert list(problems(session)) == []

    # the console's case page: the three clearances side by side, DGSN's leg resent and delivered
    username, password = make_user(running_hub.hub.sessions, "supervisor")
    with ConsoleClient(running_hub.url, username, password) as supervisor:
        page = supervisor.get(f"/monitor/cases/{repatriation}").text
    cards = re.findall(r'data-authority="([A-Z_]+)".*?class="badge ([a-z-]+) decision"', page, re.S)
    assert cards == [("SANTE", "state-good"), ("ETAT_CIVIL", "state-good"), ("DGSN", "state-good")]
    assert re.search(r'data-kind="RESENT" data-partner="DGSN"', page)
    assert re.search(r'data-kind="DEAD_LETTERED" data-partner="DGSN"', page)

"""A resent message's case continues: a request dead-lettered (its partner unreachable) fails its case; once
the partner is back and the message is resent (POST /api/v1/messages/{id}/resend, as the console does), the
partner's late answer takes the FAILED case to its final status, and the case history records it."""
from __future__ import annotations

from conftest import wait_for
from registry.history import problems


def open_licence_case(client, number: str) -> str:
    citizen = client.post("/api/v1/citizens", json={
        "post_code": "FR-PARIS", "given_name_latin": "Khadija", "family_name_latin": "Alaoui",
        "given_name_arabic": "خديجة", "family_name_arabic": "العلوي", "birth_date": "1979-03-02", "sex": "F",
        "cnie": "J123456", "country": "FR", "city": "Paris"})
    assert citizen.status_code == 201, citizen.text
    case = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": citizen.json()["registration_id"],
        "licence": {"number": number, "categories": ["B"], "issue_date": "2005-09-01"}})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def case_in(client, reference: str, status: str) -> dict | None:
    case = client.get(f"/api/v1/cases/{reference}").json()
    return case if case["status"] == status else None


def test_a_failed_case_takes_the_late_answer_to_its_resent_request(running_hub, client, start_sandbox):
    # NARSA is not running yet: every delivery is refused until the retry policy gives up
    reference = open_licence_case(client, "12/345673")  # the sandbox finds this licence authentic
    message_id = f"REGISTRY-{reference}"
    failed = wait_for(lambda: case_in(client, reference, "FAILED"), 40, what="the case to fail")
    assert "connection refused" in failed["history"][-1]["note"]
    assert client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DEAD"

    narsa = start_sandbox("narsa", running_hub.url)
    resent = client.post(f"/api/v1/messages/{message_id}/resend")
    assert resent.status_code == 200 and resent.json()["resent"] == 1, resent.text
    case = wait_for(lambda: case_in(client, reference, "AUTHENTIC"), 30, what="the late verdict")

    assert [(h["status"], h["actor"]) for h in case["history"]] == [
        ("SUBMITTED", case["history"][0]["actor"]), ("AWAITING_PARTNER", "hub"), ("FAILED", "hub"),
        ("AUTHENTIC", "NARSA")]
    assert case["history"][-1]["note"].startswith("after the failure, a late answer: verdict AUTHENTIC")
    assert case["partner_reference"].startswith("NARSA-")
    assert [d["kind"] for d in case["documents"]] == ["NARSA_ATTESTATION"]
    assert narsa.stats()["received"] == 1
    assert client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DELIVERED"
    with running_hub.hub.sessions() as session:  # what `hub evidence verify` checks of the case history
        assert list(problems(session)) == []

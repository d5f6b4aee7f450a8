"""Registration and passport flows on real processes: registry -> hub -> DGSN sandbox over SOAP ->
synchronous answers through intake, status callbacks to the hub's /soap/DGSN -> cases final."""
from __future__ import annotations

import pytest
from lxml import etree

from conftest import wait_for
from hub.trust import pki
from hub.trust.signing import verify

DGSN_NS = "urn:ma:dgsn:services-consulaires:1"
REGISTRATION_FINAL = {"ACTIVE", "REJECTED", "FAILED"}
PERSON = {"given_name_latin": "Youssef", "family_name_latin": "El Amrani", "given_name_arabic": "يوسف",
          "family_name_arabic": "العمراني", "birth_date": "1988-04-12", "birth_place": "Casablanca", "sex": "M"}
ADDRESS = {"country": "FR", "city": "Paris", "lines": ["3 rue de Rivoli"], "postal_code": "75004"}


@pytest.fixture
def dgsn(running_hub, start_sandbox):
    return start_sandbox("dgsn", running_hub.url, extra_args=["--answer-delay", "0.1"])


def register(client, cnie: str | None) -> dict:
    body = {"kind": "NEW", "post_code": "FR-PARIS", "person": {**PERSON, "cnie": cnie}, "address": ADDRESS}
    response = client.post("/api/v1/cases/consular-registration", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def case_when(client, reference: str, statuses: set[str], timeout: float = 30) -> dict:
    return wait_for(lambda: (c := client.get(f"/api/v1/cases/{reference}").json())["status"] in statuses and c,
                    timeout, what=f"case {reference} to reach {sorted(statuses)}")


def test_registration_outcomes_follow_dgsn_identity_check(client, dgsn):
    expected = {"BK123453": ("ACTIVE", "MATCH"), "BK123457": ("REJECTED", "MISMATCH"),
                "BK123459": ("REJECTED", "UNKNOWN"), None: ("REJECTED", "UNKNOWN")}
    opened = {cnie: register(client, cnie) for cnie in expected}
    for cnie, (status, identity) in expected.items():
        case = case_when(client, opened[cnie]["reference"], REGISTRATION_FINAL)
        assert (case["status"], case["outcome"]["identity"]) == (status, identity), case
        assert [h["status"] for h in case["history"]] == ["SUBMITTED", "IDENTITY_CHECK", status]
        assert case["partner_reference"].startswith("DGSN-")
        citizen = client.get(f"/api/v1/citizens/{case['registration_id']}").json()
        assert citizen["status"] == status
    # the synchronous answer went through intake: verified, mapped in, correlated, delivered to the registry
    answers = client.get("/api/v1/messages", params={"type": "IdentityCheckResult"}).json()["items"]
    assert len(answers) == 4 and {a["sender"] for a in answers} == {"DGSN"}
    events = [e["event"] for e in client.get(f"/api/v1/messages/{answers[0]['id']}").json()["timeline"]]
    assert "MAPPED_IN" in events and "CORRELATED" in events
    # no address notification for NEW registrations; every document DGSN got verifies as the hub's
    hub_cert = pki.load_certificate(str(dgsn.pki_dir / "hub.crt"))
    received = dgsn.received("DGSN")
    assert len(received) == 4 and all(p.name.startswith("VerifierIdentite-") for p in received)
    for path in received:
        verify(etree.fromstring(path.read_bytes()), hub_cert, signer_name="hub")


def test_address_update_is_also_notified_to_dgsn(client, dgsn):
    first = case_when(client, register(client, "C765432")["reference"], REGISTRATION_FINAL)
    registration_id = first["registration_id"]
    new_address = {"country": "BE", "city": "Bruxelles", "lines": ["12 avenue Louise", "Boîte 4"]}
    update = client.post("/api/v1/cases/consular-registration", json={
        "kind": "UPDATE", "registration_id": registration_id, "address": new_address,
        "address_effective_date": "2026-11-01"})
    assert update.status_code == 201, update.text
    renewal = client.post("/api/v1/cases/consular-registration",
                          json={"kind": "RENEWAL", "registration_id": registration_id})
    assert renewal.status_code == 201, renewal.text
    case = case_when(client, update.json()["reference"], REGISTRATION_FINAL)
    assert case["status"] == "ACTIVE"
    case_when(client, renewal.json()["reference"], REGISTRATION_FINAL)
    citizen = client.get(f"/api/v1/citizens/{registration_id}").json()
    assert (citizen["country"], citizen["city"]) == ("BE", "Bruxelles")
    # the UPDATE fanned out to two DGSN operations (content-based routing); the RENEWAL did not
    message = wait_for(lambda: (m := client.get(f"/api/v1/messages/REGISTRY-{case['reference']}").json())["state"]
                       == "DELIVERED" and m, what="both deliveries of the update")
    assert len(message["deliveries"]) == 2
    notices = [p for p in dgsn.received("DGSN") if p.name.startswith("NotifierChangementAdresse-")]
    assert [p.name for p in notices] == [f"NotifierChangementAdresse-REGISTRY-{case['reference']}.xml"]
    notice = etree.fromstring(notices[0].read_bytes())
    assert notice.findtext(f"{{{DGSN_NS}}}NouvelleAdresse/{{{DGSN_NS}}}Ville") == "Bruxelles"
    assert notice.findtext(f"{{{DGSN_NS}}}DateEffet") == "01/11/2026"
    renewal_message = client.get(f"/api/v1/messages/REGISTRY-{renewal.json()['reference']}").json()
    assert len(renewal_message["deliveries"]) == 1


def registered(client, cnie: str) -> dict:
    """A citizen registered through POST /api/v1/citizens, once DGSN's identity check made them ACTIVE."""
    response = client.post("/api/v1/citizens", json={**PERSON, "post_code": "FR-PARIS", "cnie": cnie, "country": "FR",
                                                     "city": "Paris", "address_lines": "3 rue de Rivoli"})
    assert response.status_code == 202, response.text
    registration_id = response.json()["registration_id"]
    return wait_for(lambda: (c := client.get(f"/api/v1/citizens/{registration_id}").json())["status"] == "ACTIVE"
                    and c, 30, what=f"{registration_id} to be ACTIVE")


def apply_for_passport(client, registration_id: str, enrolment: str) -> str:
    response = client.post("/api/v1/cases/passport-application", json={
        "registration_id": registration_id, "kind": "RENEWAL", "previous_passport": "TK1234567",
        "enrolment": {"reference": enrolment}})
    assert response.status_code == 201, response.text
    return response.json()["reference"]


def test_passport_is_produced_handed_over_or_rejected(client, dgsn):
    citizen = registered(client, "BK123453")
    produced = apply_for_passport(client, citizen["registration_id"], "ENR-FR-PARIS-000311")
    rejected = apply_for_passport(client, citizen["registration_id"], "ENR-FR-PARIS-000319")
    early = client.post(f"/api/v1/cases/{produced}/handover", json={})
    assert early.status_code == 409 or client.get(f"/api/v1/cases/{produced}").json()["status"] == "AVAILABLE_AT_POST"

    case = case_when(client, produced, {"AVAILABLE_AT_POST", "REJECTED", "FAILED"})
    assert case["status"] == "AVAILABLE_AT_POST", case
    assert [h["status"] for h in case["history"]] == ["SUBMITTED", "AWAITING_PARTNER", "ACKNOWLEDGED",
                                                      "IN_PRODUCTION", "SHIPPED", "AVAILABLE_AT_POST"]
    assert case["outcome"]["passport_number"].startswith("Z")
    handed = client.post(f"/api/v1/cases/{produced}/handover", json={"handed_over_on": "2026-12-02"})
    assert handed.status_code == 200, handed.text
    assert handed.json()["status"] == "DELIVERED"
    assert client.post(f"/api/v1/cases/{produced}/handover", json={}).json()["status"] == "DELIVERED"  # idempotent
    wait_for(lambda: any(p.name.startswith("DeclarerRemisePasseport-") for p in dgsn.received("DGSN")),
             what="DGSN to receive the handover")
    assert client.get(f"/api/v1/citizens/{citizen['registration_id']}").json()["passport_number"] == \
        case["outcome"]["passport_number"]

    refused = case_when(client, rejected, {"REJECTED", "FAILED"})
    assert refused["status"] == "REJECTED" and refused["outcome"]["reason"] == "ENROLEMENT_INCOMPLET"

    # status callbacks came over SOAP to /soap/DGSN and DGSN verified every receipt the hub answered with
    stats = wait_for(lambda: (s := dgsn.stats())["hub_receipts_verified"] >= 4 and s, what="receipts")
    assert stats.get("hub_receipts_invalid", 0) == 0 and stats["pending_callbacks"] == 0
    updates = client.get("/api/v1/messages", params={"type": "PassportStatusUpdate"}).json()["items"]
    assert len(updates) == 4


def test_handover_is_refused_before_the_passport_is_available(client, dgsn):
    citizen = registered(client, "BK123453")
    dgsn.behave(mode="fail", status=503, retry_after=30)  # the application stays with the hub
    reference = apply_for_passport(client, citizen["registration_id"], "ENR-FR-PARIS-000411")
    response = client.post(f"/api/v1/cases/{reference}/handover", json={})
    assert response.status_code == 409
    assert "AWAITING_PARTNER" in response.json()["detail"]

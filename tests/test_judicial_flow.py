"""Judicial documents end to end on real processes: the JUSTICE sandbox sends signed requests to the hub's
SOAP endpoint (zeep), the registry opens cases at the addressees' posts, the posts record outcomes, and
the signed delivery certificates reach the JUSTICE sandbox over SOAP (the hub's SoapConnector)."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest
from lxml import etree

from conftest import wait_for
from support import register_citizen
from hub.trust import pki
from hub.trust.signing import verify

pytestmark = pytest.mark.slow

JUSTICE_NS = "urn:ma:justice:plis-judiciaires:1"
FINAL = {"SERVED", "REFUSED", "NOT_FOUND", "ADDRESSEE_UNKNOWN", "FAILED"}
CITIZENS = [("FR-PARIS", "BK123456", "Youssef", "El Amrani"), ("FR-ORLY", "J654321", "Khadija", "Alaoui"),
            ("FR-PARIS", "AB12345", "Omar", "Bennani")]
UNKNOWN_CNIE = "ZZ999999"


def register(client, post: str, cnie: str, given: str, family: str) -> dict:
    return register_citizen(client, post_code=post, cnie=cnie, given_name_latin=given, family_name_latin=family,
                            birth_date="1985-02-03")


def judicial_cases(client) -> dict[str, dict]:
    """Cases by the addressee's CNIE (read one by one: lists mask identity fields)."""
    cases = client.get("/api/v1/cases", params={"service": "JUDICIAL_DOCUMENT", "limit": 100}).json()
    full = [client.get(f"/api/v1/cases/{c['reference']}").json() for c in cases]
    return {c["details"]["addressee"]["cnie"]: c for c in full}


def test_requests_become_cases_and_the_posts_outcomes_reach_justice(running_hub, start_sandbox, client, pki_dir,
                                                                 tmp_path):
    citizens = {cnie: register(client, post, cnie, given, family) for post, cnie, given, family in CITIZENS}
    justice = start_sandbox("justice", running_hub.url)
    addressees = [{"cnie": cnie, "name": f"{c['given_name_latin']} {c['family_name_latin']}"}
                  for cnie, c in citizens.items()]
    sent = httpx.post(f"{justice.url}/_sandbox/send-requests", json={"addressees": addressees}, timeout=10)
    assert sent.status_code == 202, sent.text
    requests_by_cnie = {r["cnie"]: r for r in sent.json()["requests"]}

    def all_opened():
        found = judicial_cases(client)
        return found if len(found) == 3 and all(c["status"] == "AT_POST" for c in found.values()) else None
    cases = wait_for(all_opened, 30, what="three judicial cases at their posts")
    for cnie, citizen in citizens.items():
        case = cases[cnie]
        assert case["status"] == "AT_POST" and case["post_code"] == citizen["post_code"]
        assert case["registration_id"] == citizen["registration_id"]
        assert case["partner_reference"] == requests_by_cnie[cnie]["reference"]
        assert case["request_message_id"] == requests_by_cnie[cnie]["message_id"]

    # the document is kept with the case, opaque; never in the case's metadata
    full = client.get(f"/api/v1/cases/{cases['BK123456']['reference']}").json()
    [document] = full["documents"]
    assert document["kind"] == "JUDICIAL_DOCUMENT" and "EncryptedContent" in document["xml"]
    assert "EncryptedContent" not in str(full["details"]) and "AES" not in str(full["details"])

    today = dt.date.today()
    outcomes = {"BK123456": "SERVED", "J654321": "REFUSED", "AB12345": "NOT_FOUND"}
    for cnie, outcome in outcomes.items():
        response = client.post(f"/api/v1/cases/{cases[cnie]['reference']}/outcome",
                               json={"outcome": outcome, "date": today.isoformat()})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == outcome
    history = [h["status"] for h in client.get(f"/api/v1/cases/{cases['J654321']['reference']}").json()["history"]]
    assert history == ["RECEIVED", "AT_POST", "CERTIFYING", "REFUSED"]

    # the same outcome again changes nothing; another one is refused
    again = client.post(f"/api/v1/cases/{cases['BK123456']['reference']}/outcome", json={"outcome": "SERVED"})
    assert again.status_code == 200 and again.json()["status"] == "SERVED"
    other = client.post(f"/api/v1/cases/{cases['BK123456']['reference']}/outcome", json={"outcome": "REFUSED"})
    assert other.status_code == 409

    expected = {"BK123456": "REMIS", "J654321": "REFUS", "AB12345": "INTROUVABLE"}
    def certified_at_justice() -> bool:
        by_id = {r["message_id"]: r for r in httpx.get(f"{justice.url}/_sandbox/requests", timeout=5).json()}
        return all(by_id[requests_by_cnie[cnie]["message_id"]]["outcome"] == o for cnie, o in expected.items())
    wait_for(certified_at_justice, 30, what="every certificate at JUSTICE")

    hub_certificate = pki.load_certificate(str(pki_dir / "hub.crt"))
    received = tmp_path / "sandbox" / "JUSTICE" / "received"
    for cnie, resultat in expected.items():
        reference = cases[cnie]["reference"]
        message = client.get(f"/api/v1/messages/REGISTRY-{reference}-CERT").json()
        assert message["in_reply_to"] == requests_by_cnie[cnie]["message_id"]
        assert message["correlation_id"] == requests_by_cnie[cnie]["reference"]
        assert message["deliveries"][0]["partner"] == "JUSTICE" and message["deliveries"][0]["state"] == "DELIVERED"
        attestation = verify(etree.parse(str(received / f"REGISTRY-{reference}-CERT.xml")).getroot(), hub_certificate,
                             signer_name="hub")
        assert attestation.findtext(f"{{{JUSTICE_NS}}}Resultat") == resultat
        assert attestation.findtext(f"{{{JUSTICE_NS}}}ReferenceDemande") == requests_by_cnie[cnie]["message_id"]
        assert attestation.find(f"{{{JUSTICE_NS}}}CNIE") is None  # minimisation: only the outcome travels
    refused = etree.parse(str(received / f"REGISTRY-{cases['J654321']['reference']}-CERT.xml")).getroot()
    assert refused.findtext(f"{{{JUSTICE_NS}}}DateSignificationReputee") == \
        (today + dt.timedelta(days=10)).strftime("%d/%m/%Y")
    assert refused.findtext(f"{{{JUSTICE_NS}}}PosteConsulaire") == "FR-ORLY"
    assert justice.stats()["outcomes"] == {"REMIS": 1, "REFUS": 1, "INTROUVABLE": 1, "DESTINATAIRE_INCONNU": 0}


def test_unknown_addressee_is_certified_at_once(running_hub, start_sandbox, client, tmp_path):
    justice = start_sandbox("justice", running_hub.url)
    [request] = httpx.post(f"{justice.url}/_sandbox/send-requests", timeout=10, json={
        "addressees": [{"cnie": UNKNOWN_CNIE, "name": "Personne Inconnue"}]}).json()["requests"]
    case = wait_for(lambda: (judicial_cases(client).get(UNKNOWN_CNIE) or {}).get("status") in FINAL
                    and judicial_cases(client)[UNKNOWN_CNIE], 30, what="the case")
    assert case["status"] == "ADDRESSEE_UNKNOWN" and case["post_code"] is None and case["registration_id"] is None
    history = [h["status"] for h in client.get(f"/api/v1/cases/{case['reference']}").json()["history"]]
    assert history == ["RECEIVED", "CERTIFYING", "ADDRESSEE_UNKNOWN"]
    wait_for(lambda: {r["message_id"]: r for r in httpx.get(f"{justice.url}/_sandbox/requests", timeout=5).json()}
             [request["message_id"]]["outcome"] == "DESTINATAIRE_INCONNU", 30, what="the certificate at JUSTICE")
    message = client.get(f"/api/v1/messages/REGISTRY-{case['reference']}-CERT").json()
    assert message["in_reply_to"] == request["message_id"] and message["correlation_id"] == request["reference"]
    received = tmp_path / "sandbox" / "JUSTICE" / "received" / f"REGISTRY-{case['reference']}-CERT.xml"
    assert etree.parse(str(received)).getroot().find(f"{{{JUSTICE_NS}}}PosteConsulaire") is None


def test_certificate_waits_while_justice_is_failing(running_hub, start_sandbox, client):
    register(client, *CITIZENS[0])
    justice = start_sandbox("justice", running_hub.url)
    httpx.post(f"{justice.url}/_sandbox/send-requests", json={"addressees": [{"cnie": "BK123456", "name": "Y E"}]},
               timeout=10).raise_for_status()
    case = wait_for(lambda: judicial_cases(client).get("BK123456"), 30, what="the case")
    wait_for(lambda: judicial_cases(client)["BK123456"]["status"] == "AT_POST", 10, what="AT_POST")
    justice.behave(mode="fail", status=503, retry_after=1)
    response = client.post(f"/api/v1/cases/{case['reference']}/outcome", json={"outcome": "SERVED"})
    assert response.json()["status"] == "SERVED"  # final: the hub accepted the certificate
    message_id = f"REGISTRY-{case['reference']}-CERT"
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["attempts"] >= 2, 20,
             what="two failed attempts")
    error = client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["last_error"]
    assert "soap:Server" in error
    justice.behave(mode="normal")
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["state"] == "DELIVERED",
             20, what="delivery once JUSTICE recovers")
    assert justice.stats()["outcomes"]["REMIS"] == 1


def test_certificate_refused_by_justice_is_noted_on_the_final_case(running_hub, start_sandbox, client):
    register(client, *CITIZENS[1])
    justice = start_sandbox("justice", running_hub.url)
    httpx.post(f"{justice.url}/_sandbox/send-requests", json={"addressees": [{"cnie": "J654321", "name": "K A"}]},
               timeout=10).raise_for_status()
    wait_for(lambda: (judicial_cases(client).get("J654321") or {}).get("status") == "AT_POST", 30, what="AT_POST")
    reference = judicial_cases(client)["J654321"]["reference"]
    justice.behave(mode="fail", status=400)  # a soap:Client fault: permanent
    assert client.post(f"/api/v1/cases/{reference}/outcome", json={"outcome": "REFUSED"}).json()["status"] == "REFUSED"
    message_id = f"REGISTRY-{reference}-CERT"
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DEAD", 20, what="dead letter")
    # The note may come before or after the case's final status: the delivery races the registry.
    def noted():
        case = client.get(f"/api/v1/cases/{reference}").json()
        notes = [e for e in case["history"] if e["actor"] == "hub" and "not delivered to JUSTICE" in e["note"]]
        return case["status"] == "REFUSED" and notes and (case, notes[0])
    case, note = wait_for(noted, 10, what="the note")
    assert "soap:Client" in note["note"]
    assert case["status"] == "REFUSED"

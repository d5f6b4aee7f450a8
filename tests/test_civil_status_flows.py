"""Civil-status extract and transcription end to end on real processes: consular API -> registry ->
hub -> ETAT_CIVIL sandbox over REST -> synchronous answer or callback -> intake -> case final."""
from __future__ import annotations

import pytest
from lxml import etree

from conftest import wait_for
from support import register_citizen
from hub.trust import pki
from hub.trust.signing import verify

EC = "urn:ma:interieur:etat-civil:1"
EXTRACT_FINAL = {"ISSUED", "NOT_FOUND", "FAILED"}
TRANSCRIPTION_FINAL = {"TRANSCRIBED", "REJECTED", "FAILED"}


@pytest.fixture
def etat_civil(running_hub, start_sandbox):
    return start_sandbox("etat_civil", running_hub.url, extra_args=["--answer-delay", "0.2"])


def register(client) -> str:
    return register_citizen(client)["registration_id"]


def open_extract(client, registration_id: str, number: str, **extra) -> str:
    case = client.post("/api/v1/cases/civil-status-extract", json={
        "registration_id": registration_id,
        "act": {"office": "1441011", "year": 1988, "number": number, "kind": "BIRTH"}, **extra})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def open_transcription(client, registration_id: str, foreign_number: str, event: str = "BIRTH") -> str:
    person = {"given_name_latin": "Rayan", "family_name_latin": "El Amrani", "given_name_arabic": "ريان",
              "family_name_arabic": "العمراني", "sex": "M", "birth_date": "2026-10-02"}
    case = client.post("/api/v1/cases/transcription", json={
        "registration_id": registration_id, "event": event, "event_date": "2026-10-02",
        "event_place": {"country": "FR", "city": "Paris"},
        "foreign_act": {"country": "FR", "authority": "Mairie du 15e arrondissement de Paris",
                        "number": foreign_number, "date": "2026-10-04"},
        "person": person,
        "father": {k: v for k, v in person.items() if k not in ("sex", "birth_date")} | {"given_name_latin": "Youssef",
                                                                                          "given_name_arabic": "يوسف"}})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def wait_final(client, reference: str, final: set[str], timeout: float = 30) -> dict:
    return wait_for(lambda: (c := client.get(f"/api/v1/cases/{reference}").json())["status"] in final and c,
                    timeout, what=f"case {reference} to reach a final state")


def test_extract_issued_with_signed_extract_kept_or_not_found(running_hub, etat_civil, client, pki_dir):
    applicant = register(client)
    issued_ref = open_extract(client, applicant, "1234")
    missing_ref = open_extract(client, applicant, "889", subject={
        "given_name_latin": "Ahmed", "family_name_latin": "El Amrani", "given_name_arabic": "أحمد",
        "family_name_arabic": "العمراني", "birth_date": "1950-02-01"})

    issued = wait_final(client, issued_ref, EXTRACT_FINAL)
    assert issued["status"] == "ISSUED", issued["history"]
    assert [h["status"] for h in issued["history"]] == ["SUBMITTED", "AWAITING_PARTNER", "ISSUED"]
    assert issued["partner_reference"].startswith("EXT-")
    [document] = issued["documents"]
    assert document["kind"] == "CIVIL_STATUS_EXTRACT"
    # the extract stands on its own: it verifies against ETAT_CIVIL's certificate, without the hub
    extract = verify(etree.fromstring(document["xml"].encode()),
                     pki.load_certificate(str(pki_dir / "ETAT_CIVIL.crt")), signer_name="ETAT_CIVIL")
    assert extract.findtext(f"{{{EC}}}Acte/{{{EC}}}NumeroActe") == "1234"
    assert extract.findtext(f"{{{EC}}}ReferenceDossier") == issued_ref

    missing = wait_final(client, missing_ref, EXTRACT_FINAL)
    assert missing["status"] == "NOT_FOUND" and missing["outcome"]["reason"] == "ACTE_INTROUVABLE"
    assert missing["documents"] == []

    # what ETAT_CIVIL received was signed by the hub, in its own format, with no registration id or CNIE
    hub_cert = pki.load_certificate(str(pki_dir / "hub.crt"))
    received = etat_civil.received("ETAT_CIVIL")
    assert len(received) == 2
    for path in received:
        verify(etree.fromstring(path.read_bytes()), hub_cert, signer_name="hub")
        assert b"MRE-" not in path.read_bytes() and b"BK123456" not in path.read_bytes()
    # the synchronous answer was taken in as a message of its own, correlated to the request
    answer = client.get("/api/v1/messages", params={"type": "CivilStatusExtract",
                                                    "correlation_id": issued_ref}).json()["items"][0]
    events = [e["event"] for e in client.get(f"/api/v1/messages/{answer['id']}").json()["timeline"]]
    assert "MAPPED_IN" in events and "CORRELATED" in events


def test_transcription_acknowledged_then_transcribed_or_rejected(running_hub, etat_civil, client):
    applicant = register(client)
    accepted_ref = open_transcription(client, applicant, "2026/1520")
    rejected_ref = open_transcription(client, applicant, "2026/1529")

    transcribed = wait_final(client, accepted_ref, TRANSCRIPTION_FINAL)
    assert transcribed["status"] == "TRANSCRIBED", transcribed["history"]
    assert [h["status"] for h in transcribed["history"]] == ["SUBMITTED", "AWAITING_PARTNER", "ACKNOWLEDGED",
                                                             "TRANSCRIBED"]
    act = transcribed["outcome"]["moroccan_act"]
    assert act["office"] == "CONS-FR-PARIS" and act["kind"] == "BIRTH" and act["year"] == "2026"
    assert transcribed["partner_reference"].startswith("ETAT_CIVIL-")

    rejected = wait_final(client, rejected_ref, TRANSCRIPTION_FINAL)
    assert rejected["status"] == "REJECTED"
    assert rejected["outcome"]["reason"] == "PIECES_MANQUANTES"
    assert etat_civil.stats()["callbacks_sent"] == 2


def test_partner_outage_is_retried_then_the_case_completes(running_hub, etat_civil, client):
    etat_civil.behave(mode="fail", status=503, retry_after=1)
    reference = open_extract(client, register(client), "4242")
    message_id = f"REGISTRY-{reference}"
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["attempts"] >= 2,
             what="two failed attempts")
    assert "partner answered 503" in client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["last_error"]
    assert client.get(f"/api/v1/cases/{reference}").json()["status"] == "AWAITING_PARTNER"
    etat_civil.behave(mode="normal")
    assert wait_final(client, reference, EXTRACT_FINAL)["status"] == "ISSUED"


def test_refused_request_dead_letters_and_fails_the_case(running_hub, etat_civil, client):
    etat_civil.behave(mode="fail", status=422)
    reference = open_transcription(client, register(client), "2026/1520")
    case = wait_final(client, reference, TRANSCRIPTION_FINAL)
    assert case["status"] == "FAILED" and "partner answered 422" in case["history"][-1]["note"]


def test_invalid_requests_are_refused_by_the_api(running_hub, client):
    applicant = register(client)
    bad_kind = client.post("/api/v1/cases/civil-status-extract", json={
        "registration_id": applicant, "act": {"office": "1441011", "year": 1988, "number": "12", "kind": "DIVORCE"}})
    assert bad_kind.status_code == 422
    dates = client.post("/api/v1/cases/transcription", json={
        "registration_id": applicant, "event": "BIRTH", "event_date": "2026-10-02",
        "event_place": {"country": "FR", "city": "Paris"},
        "foreign_act": {"country": "FR", "authority": "Mairie", "number": "1", "date": "2026-10-04"},
        "person": {"given_name_latin": "A", "family_name_latin": "B", "given_name_arabic": "ا",
                   "family_name_arabic": "ب", "sex": "F", "birth_date": "2026-10-01"}})
    assert dates.status_code == 422
    assert client.get("/api/v1/cases").json() == []

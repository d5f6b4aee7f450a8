"""A resend reopens the case, for every family of partners, on real processes (the project's sandboxes): the
registry's request is dead-lettered while its partner is down and its case (or CDG batch and its cases) FAILS;
once the partner is back and the message is resent (POST /api/v1/messages/{id}/resend, as the console's dead
letters do), the case waits for the partner again, takes its answer to its final status and keeps the
partner's signed artefact, which still verifies against that partner's certificate.

NARSA (REST callback) and DGSN's clearance of a repatriation are in tests/test_case_resume.py; here DGSN's
identity check (SOAP, answered synchronously), ETAT_CIVIL's extract and SANTE's clearance (REST), CDG's
batches (SFTP, as one message and as a streamed file) and JUSTICE's delivery certificate (SOAP)."""
from __future__ import annotations

import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from conftest import free_port, wait_for, write_config
from hub.errors import DeliveryError
from hub.intake.polling import poll_partner
from registry import canonical
from registry.history import problems
from registry.models import Case, CaseDocument
from registry.services import life_certificates as lc
from support import open_repatriation_case, register_citizen


pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings, tmp_path):
    """Partners tried twice before a delivery is dead-lettered: the test waits for the dead letters."""
    quick = {"max_attempts": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 0.2}
    return settings.replace(config_dir=write_config(tmp_path / "config-quick", retry=quick))


def case_in(client, reference: str, status: str) -> dict | None:
    case = client.get(f"/api/v1/cases/{reference}").json()
    return case if case["status"] == status else None


def failed(client, reference: str) -> dict:
    case = wait_for(lambda: case_in(client, reference, "FAILED"), 40, what=f"{reference} to fail")
    assert client.get(f"/api/v1/messages/REGISTRY-{reference}").json()["state"] == "DEAD"
    return case


def resend(client, message_id: str, deliveries: int = 1) -> None:
    resent = client.post(f"/api/v1/messages/{message_id}/resend")
    assert resent.status_code == 200 and resent.json()["resent"] == deliveries, resent.text


def statuses(case: dict) -> list[str]:
    return [h["status"] for h in case["history"]]


def signed_artefact(running_hub, reference: str, kind: str, partner: str) -> etree._Element:
    """The case's document of `kind`, as kept, verified as `partner`'s own signature (raises otherwise)."""
    with running_hub.hub.sessions() as session:
        content = session.scalars(select(CaseDocument.content).join(Case, Case.id == CaseDocument.case_id)
                                  .where(Case.reference == reference, CaseDocument.kind == kind)).one()
    return canonical.verify_partner_artefact(running_hub.apps["registry"], etree.fromstring(content), partner)


def test_dgsn_identity_check_over_soap_after_a_resend(running_hub, client, start_sandbox):
    citizen = register_citizen(client, address_lines="12 rue de la Paix")["registration_id"]
    opened = client.post("/api/v1/cases/consular-registration", json={"kind": "RENEWAL", "registration_id": citizen})
    assert opened.status_code == 201, opened.text
    reference = opened.json()["reference"]
    dead = failed(client, reference)
    assert statuses(dead)[-1] == "FAILED" and "DGSN" in dead["history"][-1]["note"]

    dgsn = start_sandbox("dgsn", running_hub.url)
    resend(client, f"REGISTRY-{reference}")
    case = wait_for(lambda: case_in(client, reference, "ACTIVE"), 30, what="DGSN's identity check")
    assert statuses(case) == ["SUBMITTED", "IDENTITY_CHECK", "FAILED", "IDENTITY_CHECK", "ACTIVE"]
    assert [h["actor"] for h in case["history"]][-2:] == ["hub", "DGSN"]
    assert case["history"][-2]["note"].startswith(f"REGISTRY-{reference} resent by ")
    assert case["outcome"]["identity"] == "MATCH" and case["partner_reference"]
    assert dgsn.stats()["received"] >= 1
    assert client.get(f"/api/v1/messages/REGISTRY-{reference}").json()["state"] == "DELIVERED"


def test_etat_civil_extract_and_sante_clearance_over_rest_after_a_resend(running_hub, client, start_sandbox):
    start_sandbox("dgsn", running_hub.url)  # SANTE and ETAT_CIVIL are down: their deliveries die
    applicant = register_citizen(client)["registration_id"]
    extract = client.post("/api/v1/cases/civil-status-extract", json={
        "registration_id": applicant, "act": {"office": "1441011", "year": 1988, "number": "1234", "kind": "BIRTH"}})
    assert extract.status_code == 201, extract.text
    extract = extract.json()["reference"]
    repatriation = open_repatriation_case(client)
    for reference in (extract, repatriation):
        failed(client, reference)

    start_sandbox(["sante", "etat_civil"], running_hub.url)
    resend(client, f"REGISTRY-{extract}")
    resend(client, f"REGISTRY-{repatriation}", deliveries=2)  # SANTE's and ETAT_CIVIL's legs
    issued = wait_for(lambda: case_in(client, extract, "ISSUED"), 30, what="ETAT_CIVIL's late extract")
    authorised = wait_for(lambda: case_in(client, repatriation, "AUTHORISED"), 30, what="the three clearances")

    assert statuses(issued) == ["SUBMITTED", "AWAITING_PARTNER", "FAILED", "AWAITING_PARTNER", "ISSUED"]
    assert [d["kind"] for d in issued["documents"]] == ["CIVIL_STATUS_EXTRACT"]
    extract_signed = signed_artefact(running_hub, extract, "CIVIL_STATUS_EXTRACT", "ETAT_CIVIL")
    assert extract_signed.findtext("{*}NumeroExtrait") == issued["outcome"]["extract_number"]

    assert statuses(authorised)[-3:] == ["FAILED", "AWAITING_CLEARANCES", "AUTHORISED"]
    assert {d["kind"] for d in authorised["documents"]} == {"CLEARANCE_SANTE", "CLEARANCE_ETAT_CIVIL",
                                                             "CLEARANCE_DGSN"}
    with running_hub.hub.sessions() as session:  # SANTE's clearance, kept as the hub delivered it
        kept = etree.fromstring(session.scalars(
            select(CaseDocument.content).join(Case, Case.id == CaseDocument.case_id)
            .where(Case.reference == repatriation, CaseDocument.kind == "CLEARANCE_SANTE")).one())
    assert (kept.findtext("{*}Authority"), kept.findtext("{*}Decision")) == ("SANTE", "GRANTED")
    with running_hub.hub.sessions() as session:  # what `hub evidence verify` checks of the case history
        assert list(problems(session)) == []


def issue_certificates(client, registration_id: str, numbers: list[str]) -> list[str]:
    references = []
    for number in numbers:
        issued = client.post("/api/v1/cases/life-certificate", json={
            "registration_id": registration_id, "pension_number": number, "fund": "CNRA"})
        assert issued.status_code == 201, issued.text
        references.append(issued.json()["reference"])
    return references


def batch_in(client, batch: str, status: str) -> dict | None:
    found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
    return found if found["status"] == status else None


@pytest.mark.both_databases  # the batch and its cases reopened in one transaction, under the batch's row lock
def test_cdg_batches_over_sftp_as_a_message_and_as_a_streamed_file_after_a_resend(running_hub, client,
                                                                                  start_sandbox, monkeypatch):
    hub = running_hub.hub
    pensioner = register_citizen(client, birth_date="1950-06-14")["registration_id"]
    # CDG is down: its SFTP server refuses connections, both uploads die
    one = issue_certificates(client, pensioner, ["20230411", "20230412", "20230419"])
    small = client.post("/api/v1/life-certificates/batches").json()["batch"]
    monkeypatch.setattr(lc, "MAX_ITEMS", 2)  # more than two: the batch is written and sent as a file
    two = issue_certificates(client, pensioner, ["20230421", "20230422", "20230429"])
    streamed = client.post("/api/v1/life-certificates/batches").json()["batch"]
    batches = {small: one, streamed: two}
    for batch, references in batches.items():
        found = wait_for(lambda: batch_in(client, batch, "FAILED"), 40, what=f"{batch} to fail")
        assert {c["status"] for c in found["cases"]} == {"FAILED"}
        assert client.get(f"/api/v1/messages/REGISTRY-{batch}").json()["state"] == "DEAD"
    assert "kept as a file" in client.get(f"/api/v1/messages/REGISTRY-{streamed}").json()["timeline"][0]["detail"]

    control = free_port()
    start_sandbox("cdg", running_hub.url, http_port=control, extra_args=["--control-port", str(control)])
    for batch in batches:
        resend(client, f"REGISTRY-{batch}")
        found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
        assert found["status"] == "SUBMITTED" and {c["status"] for c in found["cases"]} == {"BATCHED"}

    def acknowledged(batch):
        try:
            poll_partner(hub, "CDG")
        except DeliveryError as exc:  # the sandbox just started: its SFTP server may not serve its folders yet
            if "no such file or folder" not in str(exc) and "connect" not in str(exc):
                raise
            return None
        return batch_in(client, batch, "ACKNOWLEDGED")
    for batch, references in batches.items():
        found = wait_for(lambda: acknowledged(batch), 60, interval=0.3, what=f"CDG's acknowledgement of {batch}")
        assert (found["accepted"], found["rejected"]) == (2, 1)  # a pension number ending in 9 is unknown to CDG
        assert found["detail"].startswith("3 cases moved")
        for reference, expected in zip(references, ("ACCEPTED", "ACCEPTED", "REJECTED")):
            case = client.get(f"/api/v1/cases/{reference}").json()
            assert statuses(case) == ["ISSUED", "BATCHED", "FAILED", "BATCHED", expected], case["history"]
            assert case["partner_reference"] == f"CDG-AR-{batch}"
        with hub.sessions() as session:  # CDG's signed acknowledgement, kept as it arrived, still verifies
            kept = session.scalars(select(lc.PensionBatch.acknowledgement)
                                   .where(lc.PensionBatch.reference == batch)).one()
        canonical.verify_partner_artefact(running_hub.apps["registry"], etree.fromstring(kept), "CDG")
    with hub.sessions() as session:
        assert list(problems(session)) == []


def test_justice_certificate_over_soap_resent_after_a_refusal(running_hub, client, start_sandbox):
    citizen = register_citizen(client, cnie="J654321")
    justice = start_sandbox("justice", running_hub.url)
    httpx.post(f"{justice.url}/_sandbox/send-requests", json={"addressees": [{"cnie": "J654321", "name": "K A"}]},
               timeout=10).raise_for_status()

    def at_post():
        found = client.get("/api/v1/cases", params={"service": "JUDICIAL_DOCUMENT"}).json()
        return found and found[0]["status"] == "AT_POST" and found[0]
    reference = wait_for(at_post, 30, what="the judicial case at the post")["reference"]
    assert client.get(f"/api/v1/cases/{reference}").json()["registration_id"] == citizen["registration_id"]
    justice.behave(mode="fail", status=400)  # a soap:Client fault: permanent, dead at once
    assert client.post(f"/api/v1/cases/{reference}/outcome", json={"outcome": "SERVED"}).json()["status"] == "SERVED"
    message_id = f"REGISTRY-{reference}-CERT"
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DEAD", 20, what="dead letter")

    justice.behave(mode="normal")
    resend(client, message_id)
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DELIVERED", 20,
             what="the certificate at JUSTICE")
    case = client.get(f"/api/v1/cases/{reference}").json()
    assert case["status"] == "SERVED"  # the certificate's outcome is final; its resend is on the record
    notes = [h["note"] for h in case["history"] if h["actor"] == "hub"]
    assert any("not delivered to JUSTICE" in n for n in notes)
    assert any(n.startswith(f"certificate {message_id} resent to JUSTICE by ") for n in notes)
    assert justice.stats()["outcomes"]["REMIS"] == 1

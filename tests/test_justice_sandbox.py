"""The JUSTICE sandbox as a real process: it sends signed service requests to the hub's SOAP endpoint
durably (zeep, loaded from the hub's WSDL), and receives delivery certificates on its own SOAP service
(called here with zeep loaded from the sandbox's WSDL, signed with the hub's development key)."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest
import requests
import zeep
from lxml import etree
from lxml.builder import ElementMaker
from zeep.transports import Transport

from conftest import bearer, free_port, token_minter, wait_for
from connectors.soap.envelope import SOAP_ENV, parse_envelope, read_fault
from hub.trust import pki
from hub.xml.schemas import ENVELOPE_NS, SchemaSet
from hub.settings import PROJECT_ROOT
from hub.trust.signing import verify
from support import signer_for

pytestmark = pytest.mark.slow
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the hub is not under test here

NS = "urn:ma:justice:plis-judiciaires:1"
XSD = "partners/justice/plis-judiciaires.xsd"
J = ElementMaker(namespace=NS, nsmap={None: NS})
ADDRESSEES = [{"cnie": "BK123456", "name": "Youssef El Amrani"}, {"cnie": "J654321", "name": "Khadija Alaoui"}]


def send_requests(box, addressees=ADDRESSEES, **extra) -> list[dict]:
    response = httpx.post(f"{box.url}/_sandbox/send-requests", json={"addressees": addressees, **extra}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["requests"]


def sent(box) -> dict[str, dict]:
    return {r["message_id"]: r for r in httpx.get(f"{box.url}/_sandbox/requests", timeout=5).json()}


def all_acknowledged(box, ids) -> bool:
    states = sent(box)
    return all(states[i]["state"] == "acknowledged" for i in ids)


@sqlite_only
def test_requests_reach_the_hub_signed_and_the_receipts_are_kept(running_hub, start_sandbox, pki_dir, tmp_path,
                                                                  client):
    box = start_sandbox("justice", running_hub.url)
    created = send_requests(box, document="reference") + send_requests(box, ADDRESSEES[:1])
    ids = [r["message_id"] for r in created]
    wait_for(lambda: all_acknowledged(box, ids), 30, what="the hub's receipts")
    hub_certificate = pki.load_certificate(str(pki_dir / "hub.crt"))
    for request in created:
        message = client.get(f"/api/v1/messages/{request['message_id']}", params={"sender": "JUSTICE"}).json()
        assert message["type"] == "JudicialServiceRequest"
        assert message["correlation_id"] == request["reference"]
        kept = tmp_path / "sandbox" / "JUSTICE" / "receipts" / f"{request['message_id']}.xml"
        receipt = verify(etree.parse(str(kept)).getroot(), hub_certificate, signer_name="hub")
        assert receipt.findtext(f"{{{ENVELOPE_NS}}}MessageId") == request["message_id"]
    stats = box.stats()
    assert stats["requests"] == {"pending": 0, "acknowledged": 3, "rejected": 0}


@sqlite_only
def test_requests_wait_for_the_hub_across_a_restart(settings, start_sandbox, tmp_path, partner_ports):
    from hub.service import HubService

    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    box = start_sandbox("justice", hub_url)
    ids = [r["message_id"] for r in send_requests(box)]
    wait_for(lambda: len(list((tmp_path / "sandbox" / "JUSTICE" / "outbox").glob("*.xml"))) == 2, 5, what="outbox")
    box.stop()
    box = start_sandbox("justice", hub_url)
    assert {sent(box)[i]["state"] for i in ids} == {"pending"}
    service = HubService(settings)
    service.serve_in_thread("127.0.0.1", hub_port)
    try:
        wait_for(lambda: all_acknowledged(box, ids), 40, what="delivery once the hub is up")
        token = token_minter(service.hub.sessions)("integration")
        requests_in = httpx.get(f"{hub_url}/api/v1/messages", params={"type": "JudicialServiceRequest"}, timeout=5,
                                headers=bearer(token))
        assert requests_in.json()["total"] == 2
    finally:
        service.stop()


# -- the certificates Justice receives -------------------------------------------------------------


def attestation(pki_dir, request: dict, *, certificate_id: str = "REGISTRY-JUD-2026-000001-CERT",
                outcome: str = "REFUS", signed_by: str = "hub", reference: str | None = None) -> bytes:
    document = J.AttestationRemise(
        J.IdentifiantMessage(certificate_id), J.ReferenceDemande(request["message_id"]),
        J.ReferenceMJ(reference or request["reference"]), J.ReferenceConsulaire("JUD-2026-000001"),
        J.Resultat(outcome), J.DateResultat("02/12/2026"), J.DateSignificationReputee("12/12/2026"),
        J.PosteConsulaire("FR-PARIS"),
        J.DateEmission(dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()))
    signed = signer_for(pki_dir, signed_by).sign(document)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


class JusticeService:
    """zeep loaded from the sandbox's own WSDL; posts pre-signed AttestationRemise documents."""

    def __init__(self, url: str):
        self.client = zeep.Client(f"{url}/justice/ws/attestations-remise?wsdl",
                                  transport=Transport(timeout=10, operation_timeout=10))
        self.address = self.client.service._binding_options["address"]

    def post(self, document: bytes, content_type: str = "text/xml; charset=utf-8") -> requests.Response:
        envelope = (f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'.encode()
                    + document.split(b"?>", 1)[1].lstrip() + b"</soap:Body></soap:Envelope>")
        return self.client.transport.post(self.address, envelope, {"Content-Type": content_type})


@pytest.fixture
def offline_box(start_sandbox):
    """The sandbox with requests created but no hub to send them to."""
    return start_sandbox("justice", f"http://127.0.0.1:{free_port()}")


def test_certificate_is_acknowledged_once_signed_by_justice(offline_box, pki_dir, tmp_path):
    request = send_requests(offline_box, ADDRESSEES[:1])[0]
    service = JusticeService(offline_box.url)
    assert service.address == f"{offline_box.url}/justice/ws/attestations-remise"
    document = attestation(pki_dir, request)
    first = service.post(document)
    assert first.status_code == 200, first.text
    acknowledgement = parse_envelope(first.content, max_bytes=1 << 20)
    SchemaSet(PROJECT_ROOT / "schemas").validate(acknowledgement, XSD)
    signed = verify(acknowledgement, pki.load_certificate(str(pki_dir / "JUSTICE.crt")), signer_name="JUSTICE")
    assert signed.findtext(f"{{{NS}}}ReferenceAttestation") == "REGISTRY-JUD-2026-000001-CERT"
    assert signed.findtext(f"{{{NS}}}NumeroEnregistrement") == "MJ-AR-2026000001"
    again = service.post(document)
    assert again.content == first.content
    kept = tmp_path / "sandbox" / "JUSTICE" / "received" / "REGISTRY-JUD-2026-000001-CERT.xml"
    verify(etree.parse(str(kept)).getroot(), pki.load_certificate(str(pki_dir / "hub.crt")), signer_name="hub")
    assert sent(offline_box)[request["message_id"]]["outcome"] == "REFUS"
    stats = offline_box.stats()
    assert stats["outcomes"]["REFUS"] == 1 and stats["duplicates"] == 1 and stats["stored"] == 1


@pytest.mark.parametrize("case, expected", [
    ("unknown request", "DEMANDE_INCONNUE"),
    ("other reference", "DEMANDE_INCONNUE"),
    ("signed by the registry", "does not verify"),
    ("altered", "altered"),
])
def test_refused_certificates_are_client_faults(offline_box, pki_dir, case, expected):
    request = send_requests(offline_box, ADDRESSEES[:1])[0]
    document = {
        "unknown request": lambda: attestation(pki_dir, {**request, "message_id": "MJ-DS-UNKNOWN"}),
        "other reference": lambda: attestation(pki_dir, request, reference="MJ-2026-OTHER"),
        "signed by the registry": lambda: attestation(pki_dir, request, signed_by="REGISTRY"),
        "altered": lambda: attestation(pki_dir, request).replace(b"REFUS", b"REMIS"),
    }[case]()
    response = JusticeService(offline_box.url).post(document)
    assert response.status_code == 500
    fault = read_fault(parse_envelope(response.content, max_bytes=1 << 20))
    assert fault.code == "soap:Client" and expected in fault.string, fault.string
    assert offline_box.stats()["stored"] == 0


def test_content_type_and_failure_modes(offline_box, pki_dir):
    request = send_requests(offline_box, ADDRESSEES[:1])[0]
    service = JusticeService(offline_box.url)
    wrong = service.post(attestation(pki_dir, request), content_type="application/xml")
    assert wrong.status_code == 415
    assert read_fault(parse_envelope(wrong.content, max_bytes=1 << 20)).code == "soap:Client"
    offline_box.behave(mode="fail", status=503, retry_after=2)
    failing = service.post(attestation(pki_dir, request))
    fault = read_fault(parse_envelope(failing.content, max_bytes=1 << 20))
    assert failing.status_code == 503 and fault.code == "soap:Server" and fault.retry_after == 2
    offline_box.behave(mode="fail", status=400)
    fault = read_fault(parse_envelope(service.post(attestation(pki_dir, request)).content, max_bytes=1 << 20))
    assert fault.code == "soap:Client" and not fault.transient
    offline_box.behave(mode="normal")
    assert service.post(attestation(pki_dir, request)).status_code == 200

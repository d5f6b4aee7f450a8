"""One way in: a message through each door of a running hub is counted once in /metrics, with its real
message type, its sender and the door's name; a refusal through each door is one row in `refusals`
and one count of hub_messages_refused_total{reason, door}.

    rest            POST /api/v1/messages                a licence request from REGISTRY
    answer          NARSA's synchronous answer to it     (a stand-in NARSA on its port answers the delivery)
    rest-partner    POST /api/v1/partners/NARSA/messages another verdict of NARSA on the same request
    soap            POST /soap/JUSTICE                   a judicial request
    registry        the registry in process              the certificate it sends JUSTICE at once (nobody
                                                         registered has the addressee's CNIE), and a
                                                         LifeCertificateBatch submitted with Registry.submit
    sftp            CDG's outbox, polled                 CDG's acknowledgement of that batch (the CDG sandbox)
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from conftest import free_port, wait_for
from connectors.soap.envelope import wrap_document_bytes
from hub.errors import SignatureInvalid
from hub.intake.door import DOORS, Arrival
from hub.settings import PROJECT_ROOT
from hub.store.models import Refusal
from sandbox.outbox import write_atomically
from support import licence_request, scrape, sign_envelope, signer_for, strip_signature
from support import StandInPartner
from test_soap_inbound import demande

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # counting is not storage
XML = {"Content-Type": "application/xml"}
SOAP = {"Content-Type": "text/xml; charset=utf-8"}
VERDICT = PROJECT_ROOT / "mappings/narsa/cases/licence-result.from-narsa/discrepancy.input.xml"  # on LIC-2026-000013
BATCH = PROJECT_ROOT / "mappings/cdg/cases/life-certificate-batch.to-cdg/certificates-and-death-notice.input.xml"


def narsa_verdict(pki_dir: Path, *, number: str, case: str = "LIC-2026-000001", signed: bool = True) -> bytes:
    """NARSA's verdict NARSA-R-<number> on the registry's licence request for `case`, signed by NARSA."""
    text = VERDICT.read_text(encoding="utf-8").replace("NARSA-R-000013", f"NARSA-R-{number}")
    root = etree.fromstring(text.replace("LIC-2026-000013", case).encode())
    if signed:
        root = signer_for(pki_dir, "NARSA").sign(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def registry_batch(pki_dir: Path) -> bytes:
    """The registry's LifeCertificateBatch REGISTRY-LCB-2026-000007 for CDG, its document signed by REGISTRY."""
    return sign_envelope(etree.parse(str(BATCH)).getroot(), signer_for(pki_dir, "REGISTRY"))


def start_cdg(start_sandbox, hub_url: str):
    control = free_port()
    return start_sandbox("cdg", hub_url, extra_args=["--control-port", str(control)], http_port=control)


def answering(answers: dict[bytes, bytes]):
    """A stand-in partner's reply: the answer for the first key found in the request, else nothing."""
    return lambda request: next((answer for key, answer in answers.items() if key in request), b"")


def counted(before: dict, after: dict, metric: str) -> Counter:
    """How much each series of `metric` grew between two scrapes, keyed by its labels (zeros left out)."""
    return Counter({labels: after[(name, labels)] - before.get((name, labels), 0)
                    for name, labels in after if name == metric
                    and after[(name, labels)] != before.get((name, labels), 0)})


def series(door: str, message_type: str, sender: str) -> tuple:
    """The labels of an accepted (or duplicate) series, as `counted` keys them."""
    return tuple(sorted({"door": door, "type": message_type, "sender": sender}.items()))


@ON_SQLITE
def test_a_message_through_each_door_is_counted_once_with_its_type_and_door(
        running_hub, client, pki_dir, partner_ports, start_sandbox):
    url = running_hub.url
    start_cdg(start_sandbox, url)
    narsa = StandInPartner(partner_ports["NARSA"], answering({b"LIC-2026-000001": narsa_verdict(pki_dir, number="1")}))
    before = scrape(url)
    try:
        request = licence_request(pki_dir)
        assert client.post("/api/v1/messages", content=request, headers=XML).status_code == 202
        wait_for(lambda: counted(before, scrape(url), "hub_messages_accepted_total")[
            series("answer", "LicenceAuthenticationResult", "NARSA")], what="NARSA's synchronous answer")
    finally:
        narsa.close()
    assert client.post("/api/v1/messages", content=request, headers=XML).headers["x-duplicate"] == "true"
    verdict = narsa_verdict(pki_dir, number="2")
    assert client.post("/api/v1/partners/NARSA/messages", content=verdict, headers=XML).status_code == 202
    soap = httpx.post(f"{url}/soap/JUSTICE", content=wrap_document_bytes(demande(pki_dir)), headers=SOAP, timeout=10)
    assert soap.status_code == 200, soap.text
    assert running_hub.apps["registry"].submit(registry_batch(pki_dir)).message_id == "REGISTRY-LCB-2026-000007"

    def sftp_taken_in():  # CDG acknowledges the batch in its outbox; polled now rather than in 30 s
        client.post("/api/v1/partners/CDG/poll")
        return counted(before, scrape(url), "hub_messages_accepted_total")[
            series("sftp", "LifeCertificateBatchAcknowledgement", "CDG")]
    wait_for(sftp_taken_in, 30, interval=0.5, what="CDG's acknowledgement taken in from its outbox")
    wait_for(lambda: counted(before, scrape(url), "hub_messages_accepted_total")[
        series("registry", "JudicialDeliveryCertificate", "REGISTRY")], what="the registry's certificate")

    after = scrape(url)
    assert counted(before, after, "hub_messages_accepted_total") == {
        series("rest", "LicenceAuthenticationRequest", "REGISTRY"): 1,
        series("answer", "LicenceAuthenticationResult", "NARSA"): 1,
        series("rest-partner", "LicenceAuthenticationResult", "NARSA"): 1,
        series("soap", "JudicialServiceRequest", "JUSTICE"): 1,
        series("registry", "JudicialDeliveryCertificate", "REGISTRY"): 1,
        series("registry", "LifeCertificateBatch", "REGISTRY"): 1,
        series("sftp", "LifeCertificateBatchAcknowledgement", "CDG"): 1,
    }
    assert counted(before, after, "hub_messages_duplicate_total") == {
        series("rest", "LicenceAuthenticationRequest", "REGISTRY"): 1}
    assert counted(before, after, "hub_messages_refused_total") == {}


@ON_SQLITE
def test_a_refusal_through_each_door_is_recorded_and_counted_once(
        running_hub, client, pki_dir, partner_ports, start_sandbox):
    url = running_hub.url
    cdg = start_cdg(start_sandbox, url)
    unsigned = narsa_verdict(pki_dir, number="1", signed=False)
    narsa = StandInPartner(partner_ports["NARSA"], answering({b"LIC-2026-000001": unsigned}))
    before = scrape(url)
    try:
        assert client.post("/api/v1/messages", content=licence_request(pki_dir), headers=XML).status_code == 202
        wait_for(lambda: counted(before, scrape(url), "hub_messages_refused_total")[
            (("door", "answer"), ("reason", "SignatureInvalid"))], what="NARSA's unsigned answer refused")
    finally:
        narsa.close()
    other = strip_signature(licence_request(pki_dir, reference="LIC-2026-000002"))
    assert client.post("/api/v1/messages", content=other, headers=XML).status_code == 400
    assert client.post("/api/v1/partners/NARSA/messages", content=b"<x/>", headers=XML).status_code == 400
    soap = httpx.post(f"{url}/soap/JUSTICE", content=wrap_document_bytes(demande(pki_dir, signed_by=None)),
                      headers=SOAP, timeout=10)
    assert soap.status_code == 400, soap.text
    with pytest.raises(SignatureInvalid):
        running_hub.hub.receive(Arrival("registry", data=other, caller="REGISTRY"))
    write_atomically(cdg.data_dir / "CDG" / "sftp" / "outbox" / "AR_junk.xml", b"\x00 not xml")
    wait_for(lambda: client.post("/api/v1/partners/CDG/poll").json()["refused"] or counted(
        before, scrape(url), "hub_messages_refused_total")[(("door", "sftp"), ("reason", "MalformedXml"))],
        what="CDG's junk file refused")

    assert counted(before, scrape(url), "hub_messages_refused_total") == {
        (("door", "answer"), ("reason", "SignatureInvalid")): 1,
        (("door", "rest"), ("reason", "SignatureInvalid")): 1,
        (("door", "rest-partner"), ("reason", "NotRoutable")): 1,
        (("door", "soap"), ("reason", "SignatureInvalid")): 1,
        (("door", "registry"), ("reason", "SignatureInvalid")): 1,
        (("door", "sftp"), ("reason", "MalformedXml")): 1,
    }
    with running_hub.hub.sessions() as session:
        refusals = session.scalars(select(Refusal)).all()
    assert Counter((r.channel, r.partner) for r in refusals) == {
        ("answer", "NARSA"): 1, ("rest", "REGISTRY"): 1, ("rest-partner", "NARSA"): 1, ("soap", "JUSTICE"): 1,
        ("registry", "REGISTRY"): 1, ("sftp", "CDG"): 1}
    assert {r.channel for r in refusals} <= set(DOORS)


def test_an_arrival_names_a_known_door_and_brings_bytes_or_a_path():
    with pytest.raises(ValueError, match="unknown door 'local'"):
        Arrival("local", data=b"<m/>")
    with pytest.raises(ValueError, match="either bytes or a path"):
        Arrival("rest")

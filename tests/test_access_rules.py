"""Access rules per partner (`may_send` in config/partners/*.yaml) at every door of a running hub:
REST canonical, REST partner document, SOAP, SFTP polled file. A type outside the sender's may_send
is refused with 403 naming the rule, recorded in `refusals` (door, party, status, reason, size, digest,
never the bytes), and nothing is stored.

The shipped configuration cannot route a partner's document to a type it may not send (hub.config
refuses that at load, see tests/test_config.py), so the partner-door tests take the right away from
the running hub's configuration, as an operator revoking it would, to show the check at intake holds
on its own.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from conftest import free_port
from connectors.soap.envelope import parse_envelope, read_fault, wrap_document_bytes
from hub.store.models import Delivery, Event, Message, Refusal
from hub.settings import PROJECT_ROOT
from support import licence_request, replace_text, sign_envelope, signer_for
from test_soap_inbound import demande

XML = {"Content-Type": "application/xml"}
CASES = PROJECT_ROOT / "mappings"


def revoke(running_hub, party: str, message_type: str) -> None:
    """Take `message_type` out of `party`'s may_send in the running hub's configuration."""
    hub = running_hub.hub
    current = hub.config.parties[party]
    assert message_type in current.may_send
    changed = current.model_copy(update={"may_send": [t for t in current.may_send if t != message_type]})
    hub.config = hub.config.model_copy(update={"parties": {**hub.config.parties, party: changed}})


def refusals(running_hub) -> list[Refusal]:
    with running_hub.hub.sessions() as session:
        return list(session.scalars(select(Refusal).order_by(Refusal.id)))


def stored(running_hub) -> tuple[int, int, int]:
    with running_hub.hub.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Message, Delivery, Event))


def signed_sample(pki_dir: Path, case: str, party: str) -> bytes:
    """A mapping case's partner document, signed by `party`."""
    root = etree.parse(str(CASES / case)).getroot()
    return etree.tostring(signer_for(pki_dir, party).sign(root), xml_declaration=True, encoding="UTF-8")


def assert_recorded(running_hub, data: bytes, *, channel: str, partner: str, reason: str) -> None:
    [refusal] = refusals(running_hub)
    assert (refusal.channel, refusal.partner, refusal.status) == (channel, partner, 403)
    assert reason in refusal.reason
    assert refusal.size == len(data) and refusal.digest == hashlib.sha256(data).hexdigest()


def test_rest_canonical_type_outside_the_senders_may_send_is_403_and_recorded(client, running_hub, pki_dir):
    # NARSA signs a licence request of its own and names itself the sender: its signature is good,
    # but NARSA may only send LicenceAuthenticationResult.
    data = sign_envelope(replace_text(licence_request(pki_dir), "<env:Sender>REGISTRY<", "<env:Sender>NARSA<"),
                         signer_for(pki_dir, "NARSA"))
    response = client.post("/api/v1/messages", content=data, headers=XML)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["title"] == "Not allowed"
    assert "NARSA may not send LicenceAuthenticationRequest" in body["detail"]
    assert body["errors"][0]["path"] == "/Message/Header/Type"
    assert_recorded(running_hub, data, channel="rest", partner="NARSA", reason="may not send LicenceAuthentication")
    assert stored(running_hub) == (0, 0, 0)
    # the same sender sending what it may is not refused for access (control)
    assert client.post("/api/v1/messages", content=licence_request(pki_dir), headers=XML).status_code == 202


def test_rest_partner_document_mapped_to_a_type_outside_may_send_is_403_and_recorded(client, running_hub, pki_dir):
    data = signed_sample(pki_dir, "narsa/cases/licence-result.from-narsa/discrepancy.input.xml", "NARSA")
    revoke(running_hub, "NARSA", "LicenceAuthenticationResult")
    response = client.post("/api/v1/partners/NARSA/messages", content=data, headers=XML)
    assert response.status_code == 403, response.text
    assert "NARSA may not send LicenceAuthenticationResult (its may_send: nothing)" in response.json()["detail"]
    assert_recorded(running_hub, data, channel="rest-partner", partner="NARSA",
                    reason="may not send LicenceAuthenticationResult")
    assert stored(running_hub) == (0, 0, 0)


def _soap(running_hub, envelope: bytes, code: str = "JUSTICE") -> httpx.Response:
    return httpx.post(f"{running_hub.url}/soap/{code}", content=envelope,
                      headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)


def test_soap_document_of_a_type_outside_may_send_is_a_403_client_fault_and_recorded(running_hub, pki_dir):
    document = demande(pki_dir)
    revoke(running_hub, "JUSTICE", "JudicialServiceRequest")
    response = _soap(running_hub, wrap_document_bytes(document))
    assert response.status_code == 403, response.text
    fault = read_fault(parse_envelope(response.content, max_bytes=1 << 20))
    assert fault.code == "soap:Client" and not fault.transient
    assert "JUSTICE may not send JudicialServiceRequest" in fault.string
    # intake saw the document taken out of the envelope: that is what the refusal's digest is of
    [refusal] = refusals(running_hub)
    assert (refusal.channel, refusal.partner, refusal.status) == ("soap", "JUSTICE", 403)
    assert refusal.digest == hashlib.sha256(
        etree.tostring(etree.fromstring(document), xml_declaration=True, encoding="UTF-8")).hexdigest()
    assert stored(running_hub) == (0, 0, 0)


def test_soap_call_for_a_party_without_an_endpoint_is_403_and_recorded(running_hub, pki_dir):
    envelope = wrap_document_bytes(demande(pki_dir))
    response = _soap(running_hub, envelope, code="SANTE")
    assert response.status_code == 403
    assert "not a partner that calls the hub over SOAP" in read_fault(
        parse_envelope(response.content, max_bytes=1 << 20)).string
    [refusal] = refusals(running_hub)
    assert (refusal.channel, refusal.partner, refusal.status) == ("soap", "SANTE", 403)
    assert refusal.size == len(envelope)


def test_sftp_file_of_a_type_outside_may_send_is_moved_to_failed_with_the_reason(client, running_hub, pki_dir,
                                                                              start_sandbox):
    control = free_port()
    cdg = start_sandbox("cdg", running_hub.url, extra_args=["--control-port", str(control)], http_port=control)
    revoke(running_hub, "CDG", "LifeCertificateBatchAcknowledgement")
    data = signed_sample(pki_dir, "cdg/cases/batch-acknowledgement.from-cdg/accepted-and-rejected.input.xml", "CDG")
    outbox = cdg.data_dir / "CDG" / "sftp" / "outbox"
    (outbox / ".AR_LCB-2026-000007.xml.tmp").write_bytes(data)
    os.replace(outbox / ".AR_LCB-2026-000007.xml.tmp", outbox / "AR_LCB-2026-000007.xml")
    response = client.post("/api/v1/partners/CDG/poll")
    assert response.status_code == 200, response.text
    failed = cdg.data_dir / "CDG" / "sftp" / "failed"
    if response.json()["refused"] != 1:  # the hub's own scheduled poll may have taken it first
        assert (failed / "AR_LCB-2026-000007.xml").exists(), response.json()
    assert (failed / "AR_LCB-2026-000007.xml").read_bytes() == data
    reason = (failed / "AR_LCB-2026-000007.xml.reason.txt").read_text(encoding="utf-8")
    assert "CDG may not send LifeCertificateBatchAcknowledgement" in reason
    assert_recorded(running_hub, data, channel="sftp", partner="CDG", reason="may not send LifeCertificateBatch")
    assert stored(running_hub) == (0, 0, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refusals_before_intake_are_recorded_too(client, running_hub, pki_dir):
    data = licence_request(pki_dir)
    assert client.post("/api/v1/messages", content=data, headers={"Content-Type": "application/json"}).status_code == 415
    assert client.post("/api/v1/partners/NARSA/messages", content=b"<m/>" * 300_000, headers=XML).status_code == 413
    wrong, big = refusals(running_hub)
    assert (wrong.channel, wrong.partner, wrong.status, wrong.size, wrong.digest) == ("rest", None, 415, len(data), "")
    assert (big.channel, big.partner, big.status, big.size) == ("rest-partner", "NARSA", 413, 1_200_000)
    assert "limit" in big.reason

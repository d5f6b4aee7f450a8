"""The signature covers the header: a signed document re-wrapped under another header is refused at every door.

A partner signs a canonical LicenceAuthenticationResult with the header bound into it (env:Binding). Replayed
under a new MessageId, CorrelationId or Recipient it is refused with 400 naming the header field, on the
canonical door (POST /api/v1/messages), the partner's door (POST /api/v1/partners/NARSA/messages) and the
SOAP door (/soap/DGSN, with DGSN's signed answer); a genuine answer in the canonical form completes its case
end to end (the registry verifies the partner's own signature), whether NARSA signs it with the hub's own
signer or with xmlsec1. A dead letter of someone else's message fails no case or batch of the registry's.
"""
from __future__ import annotations

import datetime as dt
import shutil
import uuid

import httpx
import pytest
from lxml import etree
from lxml.builder import ElementMaker
from sqlalchemy import select

from conftest import wait_for
from connectors.base import Outbound
from connectors.local import LocalConnector
from connectors.soap.envelope import wrap_document_bytes
from hub.delivery.breaker import Breakers
from hub.delivery.workers import Attempt
from hub.errors import DeliveryError
from hub.store.models import DeliveryState
from hub.access.rules import check_may_send
from hub.trust.signing import verify
from hub.xml.envelope import business_document, check_binding, check_case, read_header
from hub.xml.schemas import ENVELOPE_NS
from registry.models import Case, CaseEvent, PensionBatch
from registry.samples import SAMPLES
from support import register_citizen, sign_envelope, signer_for

pytestmark = pytest.mark.shared_hub

XML = {"Content-Type": "application/xml"}
LIC_NS = "urn:ma:gov:consular:licence:1"
ENV = ElementMaker(namespace=ENVELOPE_NS, nsmap={"env": ENVELOPE_NS})
LIC = ElementMaker(namespace=LIC_NS, nsmap={"lic": LIC_NS})
_E = f"{{{ENVELOPE_NS}}}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def narsa_answer(reference: str, *, message_id: str | None = None, in_reply_to: str | None = "",
                 verdict: str = "NOT_AUTHENTIC") -> etree._Element:
    """NARSA's canonical LicenceAuthenticationResult for case `reference` (unsigned); InReplyTo the registry's
    request REGISTRY-<reference> unless given (None: none)."""
    header = [ENV.MessageId(message_id or unique("NARSA-C")), ENV.CorrelationId(reference)]
    in_reply_to = f"REGISTRY-{reference}" if in_reply_to == "" else in_reply_to
    if in_reply_to:
        header.append(ENV.InReplyTo(in_reply_to))
    header += [ENV.Type("LicenceAuthenticationResult"), ENV.Sender("NARSA"), ENV.Recipient("REGISTRY"),
               ENV.Created("2026-11-23T10:16:30Z")]
    return ENV.Message(ENV.Header(*header), ENV.Body(LIC.LicenceAuthenticationResult(
        LIC.CaseReference(reference), LIC.Verdict(verdict), LIC.PartnerReference(unique("NARSA")),
        LIC.DecidedAt("2026-11-23T10:16:30Z"))))


def rewrap(data: bytes, **fields: str | None) -> bytes:
    """The same signed document under another header: each field set (None: removed)."""
    root = etree.fromstring(data)
    header = root.find(f"{_E}Header")
    for name, value in fields.items():
        element = header.find(f"{_E}{name}")
        if value is None:
            header.remove(element)
        elif element is None:  # InReplyTo, after CorrelationId
            header.find(f"{_E}CorrelationId").addnext(etree.Element(f"{_E}{name}"))
            header.find(f"{_E}{name}").text = value
        else:
            element.text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def refused_naming(response: httpx.Response, field: str, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert f"/Message/Header/{field}" in [e.get("path") for e in body["errors"]], body
    return body


def open_licence_case(client) -> str:
    citizen = register_citizen(client)
    case = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": citizen["registration_id"],
        "licence": {"number": "12/345673", "categories": ["B"], "issue_date": "2005-09-01"}})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def case_status(client, reference: str) -> str:
    return client.get(f"/api/v1/cases/{reference}").json()["status"]


@pytest.fixture
def narsa(client_as):
    return client_as("partner", partner="NARSA")


# -- the canonical door --------------------------------------------------------------------------------------

def test_rewrapped_answer_is_refused_at_the_canonical_door_naming_the_field(client, narsa, pki_dir, running_hub):
    case_a, case_b = open_licence_case(client), open_licence_case(client)
    signed = sign_envelope(narsa_answer(case_a), signer_for(pki_dir, "NARSA"))
    passport_case = unique("PP-2026")
    attacks = {
        "MessageId": rewrap(signed, MessageId=unique("NARSA-C")),
        "CorrelationId": rewrap(signed, CorrelationId=case_b, InReplyTo=None),
        "InReplyTo": rewrap(signed, InReplyTo=f"REGISTRY-{case_b}"),
        "Recipient": rewrap(signed, Recipient="DGSN"),
    }
    for field, data in attacks.items():
        body = refused_naming(narsa.post("/api/v1/messages", content=data, headers=XML), field)
        assert body["title"] == "Header not covered by the signature"
    refused_naming(narsa.post("/api/v1/messages", content=rewrap(signed, CorrelationId=passport_case), headers=XML),
                   "CorrelationId")
    refused_naming(narsa.post("/api/v1/messages", content=rewrap(signed, MessageId="REGISTRY-LCB-2026-000001"),
                              headers=XML), "MessageId")
    with running_hub.hub.sessions() as session:
        stored = session.scalars(select(CaseEvent.status).join(Case).where(Case.reference == case_b)).all()
    assert "FAILED" not in stored and case_status(client, case_b) == "AWAITING_PARTNER"


def test_header_must_be_the_signed_case_and_an_answer_must_say_what_it_answers(client, narsa, pki_dir):
    """Signed by NARSA itself, still refused: a Binding whose case is not the document's CaseReference, and an
    answer without InReplyTo (before, both were accepted and the registry acted on the header's case)."""
    case_a, case_b = open_licence_case(client), open_licence_case(client)
    other_case = narsa_answer(case_a)
    other_case.find(f"{_E}Header/{_E}CorrelationId").text = case_b
    other_case.find(f"{_E}Header/{_E}InReplyTo").text = f"REGISTRY-{case_b}"
    data = sign_envelope(other_case, signer_for(pki_dir, "NARSA"))
    body = refused_naming(narsa.post("/api/v1/messages", content=data, headers=XML), "CorrelationId")
    assert case_a in body["detail"]
    unanswered = sign_envelope(narsa_answer(case_a, in_reply_to=None), signer_for(pki_dir, "NARSA"))
    refused_naming(narsa.post("/api/v1/messages", content=unanswered, headers=XML), "InReplyTo")
    no_binding = narsa_answer(case_a)
    document = no_binding.find(f"{_E}Body")[0]
    document.getparent().replace(document, signer_for(pki_dir, "NARSA").sign(document))  # signed, nothing bound
    response = narsa.post("/api/v1/messages", content=etree.tostring(no_binding), headers=XML)
    assert response.status_code == 400 and "carries no env:Binding" in response.json()["detail"]
    assert case_status(client, case_a) == case_status(client, case_b) == "AWAITING_PARTNER"


def test_genuine_narsa_answer_in_canonical_form_completes_its_case(client, narsa, pki_dir):
    reference = open_licence_case(client)
    data = sign_envelope(narsa_answer(reference, verdict="NOT_AUTHENTIC"), signer_for(pki_dir, "NARSA"))
    response = narsa.post("/api/v1/messages", content=data, headers=XML)
    assert response.status_code == 202, response.text
    wait_for(lambda: case_status(client, reference) == "NOT_AUTHENTIC", 10, what=f"case {reference} NOT_AUTHENTIC")
    events = [e["event"] for e in client.get(f"/api/v1/messages/{response.headers['x-message-id']}",
                                             params={"sender": "NARSA"}).json()["timeline"]]
    assert "CORRELATED" in events and "DEAD_LETTERED" not in events


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed (make xmlsec1 installs it)")
def test_answer_signed_by_xmlsec1_in_the_new_form_is_accepted_and_applied(client, narsa, pki_dir, tmp_path):
    from test_xmlsec_interop import xmlsec1_sign
    reference = open_licence_case(client)
    envelope = etree.fromstring(sign_envelope(narsa_answer(reference, verdict="NOT_AUTHENTIC"),
                                              signer_for(pki_dir, "NARSA")))
    document = envelope.find(f"{_E}Body")[0]
    document.remove(document[-1])  # the hub's own signer's signature: xmlsec1 signs the bound document instead
    signed = etree.fromstring(xmlsec1_sign(document, pki_dir / "NARSA.key", pki_dir / "NARSA.crt", tmp_path))
    assert signed.find(f"{_E}Binding") is not None
    document.getparent().replace(document, signed)
    response = narsa.post("/api/v1/messages", content=etree.tostring(envelope), headers=XML)
    assert response.status_code == 202, response.text
    wait_for(lambda: case_status(client, reference) == "NOT_AUTHENTIC", 10, what=f"case {reference} NOT_AUTHENTIC")
    refused_naming(narsa.post("/api/v1/messages", content=rewrap(etree.tostring(envelope),
                                                                   MessageId=unique("NARSA-X")), headers=XML),
                   "MessageId")


# -- the partner doors ---------------------------------------------------------------------------------------

def test_rewrapped_answer_is_refused_at_the_partner_door_and_the_genuine_one_accepted(client, narsa, pki_dir):
    reference = open_licence_case(client)
    signed = sign_envelope(narsa_answer(reference), signer_for(pki_dir, "NARSA"))
    for field, value in (("MessageId", unique("NARSA-C")), ("CorrelationId", open_licence_case(client)),
                         ("Recipient", "DGSN")):
        refused_naming(narsa.post("/api/v1/partners/NARSA/messages", content=rewrap(signed, **{field: value}),
                                  headers=XML), field)
    response = narsa.post("/api/v1/partners/NARSA/messages", content=signed, headers=XML)
    assert response.status_code == 202, response.text
    wait_for(lambda: case_status(client, reference) == "NOT_AUTHENTIC", 10, what=f"case {reference} NOT_AUTHENTIC")


def test_rewrapped_answer_is_refused_at_the_soap_door_naming_the_field(running_hub, settings):
    signed = SAMPLES["PassportStatusUpdate"](settings)  # DGSN's canonical answer, signed by DGSN, header bound
    for field, value in (("MessageId", unique("DGSN-C")), ("CorrelationId", unique("PP-2026")),
                         ("Recipient", "NARSA")):
        response = httpx.post(f"{running_hub.url}/soap/DGSN", content=wrap_document_bytes(rewrap(signed, **{field: value})),
                              headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
        assert response.status_code == 400, response.text
        fault = etree.fromstring(response.content)
        assert fault.findtext(".//faultcode") == "soap:Client"
        paths = [p.get("path") for p in fault.iter("{*}Problem")]
        assert f"/Message/Header/{field}" in paths, response.text


# -- dead letters fail only what they belong to ----------------------------------------------------------------

def test_dead_letter_of_another_senders_message_fails_no_case_or_batch(client, running_hub):
    registry = running_hub.apps["registry"]
    reference = open_licence_case(client)
    acknowledged, submitted = unique("LCB-2026"), unique("LCB-2026")
    now = dt.datetime.now(dt.timezone.utc)
    with running_hub.hub.sessions.begin() as session:
        for batch_reference, status in ((acknowledged, "ACKNOWLEDGED"), (submitted, "SUBMITTED")):
            session.add(PensionBatch(reference=batch_reference, message_id=f"REGISTRY-{batch_reference}",
                                     status=status, certificates=0, death_notices=0, created_at=now,
                                     detail="as acknowledged"))
    # a partner's message whose (unsigned, or foreign) header names the registry's case, request or batch
    registry.on_dead_letter("NARSA", reference, f"REGISTRY-{reference}", "refused by the registry")
    registry.on_dead_letter("NARSA", acknowledged, f"REGISTRY-{acknowledged}", "refused by the registry")
    registry.on_dead_letter("NARSA", submitted, f"REGISTRY-{submitted}", "refused by the registry")
    # the registry's own message that is not the case's request, and a dead letter of an acknowledged batch
    registry.on_dead_letter("REGISTRY", reference, "REGISTRY-LIC-OTHER-000001", "not this case's")
    registry.on_dead_letter("REGISTRY", acknowledged, f"REGISTRY-{acknowledged}", "late dead letter")
    assert case_status(client, reference) == "AWAITING_PARTNER"
    with running_hub.hub.sessions() as session:
        batches = {b.reference: (b.status, b.detail) for b in session.scalars(
            select(PensionBatch).where(PensionBatch.reference.in_([acknowledged, submitted])))}
    assert batches == {acknowledged: ("ACKNOWLEDGED", "as acknowledged"), submitted: ("SUBMITTED", "as acknowledged")}
    # control: the registry's own request, dead, fails its case; its own batch, dead, fails the batch
    registry.on_dead_letter("REGISTRY", reference, f"REGISTRY-{reference}", "NARSA refused the request")
    registry.on_dead_letter("REGISTRY", submitted, f"REGISTRY-{submitted}", "CDG refused the batch")
    assert case_status(client, reference) == "FAILED"
    with running_hub.hub.sessions() as session:
        assert session.scalars(select(PensionBatch.status).where(PensionBatch.reference == submitted)).one() == "FAILED"


def test_a_document_the_registry_refuses_is_a_permanent_failure_that_leaves_its_circuit_closed(pki_dir, running_hub):
    """The registry refusing what it is delivered (here a NARSA-signed answer re-wrapped after intake) fails that
    delivery for good, and five such refusals do not open REGISTRY's circuit for the answers of others."""
    registry = running_hub.apps["registry"]
    connector = LocalConnector("REGISTRY", handler=registry.receive)
    signed = sign_envelope(narsa_answer(unique("LIC-2026")), signer_for(pki_dir, "NARSA"))
    breakers = Breakers(["REGISTRY"], failures=3, seconds=60)
    for n in range(5):
        body = rewrap(signed, MessageId=f"REGISTRY-LCB-2026-00000{n}")
        with pytest.raises(DeliveryError) as info:
            connector.send(Outbound(f"REGISTRY-LCB-2026-00000{n}", "LicenceAuthenticationResult", body))
        assert not info.value.retryable and "REGISTRY refused it" in info.value.reason
        assert "MessageId" in info.value.reason
        outcome = Attempt(DeliveryState.DEAD, info.value)
        (breakers.failed if outcome.partner_failed else breakers.neutral)("REGISTRY")
    assert breakers.state("REGISTRY") == "closed"


# -- hub sample ------------------------------------------------------------------------------------------------

def test_every_type_a_party_may_send_has_a_valid_signed_sample(settings, running_hub):
    """`hub sample TYPE` for every type a party may send: valid, verified as its sender's, the header bound."""
    hub = running_hub.hub
    sendable = {route.type for route in hub.config.routes}
    assert set(SAMPLES) == sendable
    for message_type, build in SAMPLES.items():
        envelope = etree.fromstring(build(settings))
        hub.schemas.validate(envelope, what=f"the {message_type} sample")
        header = read_header(envelope)
        assert header.type == message_type
        check_may_send(hub.config, header.sender, message_type)
        signed = verify(business_document(envelope), hub.trust.certificates[header.sender][0],
                        signer_name=header.sender)
        check_binding(header, signed)
        check_case(header, signed)


def test_sample_help_lists_every_message_type(capsys):
    from hub.cli.main import build_parser
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["sample", "--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out.split("message types:")[1].split()
    assert listed == sorted(SAMPLES) and len(listed) == 19

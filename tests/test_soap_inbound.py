"""The hub's inbound SOAP endpoint, called by a real zeep client that loads the WSDL from the running hub.

JUSTICE's signed DemandeSignification travels as the soap:Body child byte for byte: zeep builds the
call from the hub's WSDL, then the Body child is replaced by the signed bytes (its own serialisation
would change the signed content), and the envelope is posted through zeep's transport.

The module's tests share one hub: those that are accepted use message ids of their own, and each counts
what it stored since it began.
"""
from __future__ import annotations

import datetime as dt
import itertools
import sqlite3

import pytest
import requests
import zeep
import zeep.exceptions
from lxml import etree
from lxml.builder import ElementMaker
from zeep.transports import Transport

from conftest import bearer
from connectors.soap.envelope import SOAP_ENV, parse_envelope, read_fault
from hub.trust import pki
from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import verify
from support import signer_for

JUSTICE_NS = "urn:ma:justice:plis-judiciaires:1"
OPERATION = "DeposerDemandeSignification"
J = ElementMaker(namespace=JUSTICE_NS, nsmap={None: JUSTICE_NS})
pytestmark = pytest.mark.shared_hub
_numbers = itertools.count(2)


def demande(pki_dir, *, message_id: str = "MJ-DS-TEST-000001", reference: str = "MJ-2026-T00001",
            cnie: str = "BK123456", signed_by: str | None = "JUSTICE", court: str = "TPI-CASA") -> bytes:
    """A DemandeSignification in Justice's format, signed by `signed_by` (None: unsigned)."""
    document = J.DemandeSignification(
        J.IdentifiantMessage(message_id), J.ReferenceMJ(reference),
        J.DateEmission(dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()),
        J.Juridiction(J.Code(court), J.Nom("Tribunal de première instance de Casablanca")),
        J.NumeroDossier("2026/1201/45"), J.TypeActe("CONVOCATION"), J.DateAudience("15/01/2027"),
        J.Destinataire(J.CNIE(cnie), J.NomComplet("Youssef El Amrani")),
        J.Acte(J.ContenuChiffre("q83vEjRWeJA=", typeMime="application/pdf", chiffrement="AES-256-GCM")))
    if signed_by:
        document = signer_for(pki_dir, signed_by).sign(document)
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")


def splice(envelope: etree._Element, document: bytes) -> bytes:
    """zeep's envelope with its Body child replaced by `document` byte for byte."""
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    for child in list(body):
        body.remove(child)
    body.append(etree.Comment("document"))
    head, tail = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8").split(b"<!--document-->")
    return head + document.split(b"?>", 1)[-1].lstrip() + tail


class Caller:
    """A zeep client of the hub's JUSTICE endpoint that posts pre-signed documents."""

    def __init__(self, hub_url: str):
        self.client = zeep.Client(f"{hub_url}/soap/JUSTICE?wsdl",
                                  transport=Transport(timeout=10, operation_timeout=10))
        self.binding = self.client.service._binding
        self.address = self.client.service._binding_options["address"]

    def envelope_for(self, document: bytes) -> bytes:
        values = self.client.get_element(f"{{{JUSTICE_NS}}}DemandeSignification").parse(
            etree.fromstring(document), self.client.wsdl.types)
        return splice(self.client.create_message(self.client.service, OPERATION, **{k: values[k] for k in values}),
                      document)

    def post(self, data: bytes, content_type: str = "text/xml; charset=utf-8") -> requests.Response:
        action = self.binding._operations[OPERATION].soapaction
        headers = {"Content-Type": content_type, "SOAPAction": f'"{action}"'}
        return self.client.transport.post(self.address, data, headers)

    def call(self, document: bytes) -> requests.Response:
        return self.post(self.envelope_for(document))

    def reply(self, response: requests.Response):
        """zeep's reading of the answer: the Receipt as an object, or zeep.exceptions.Fault raised."""
        return self.binding.process_reply(self.client, self.binding._operations[OPERATION], response)


@pytest.fixture
def caller(running_hub) -> Caller:
    return Caller(running_hub.url)


@pytest.fixture
def hub_certificate(pki_dir):
    return pki.load_certificate(str(pki_dir / "hub.crt"))


def fault_of(response: requests.Response):
    return read_fault(parse_envelope(response.content, max_bytes=1 << 20))


def stored(running_hub) -> int:
    """Messages the hub accepted from JUSTICE (the registry's own answers are not counted)."""
    items = requests.get(f"{running_hub.url}/api/v1/messages", params={"limit": 500}, timeout=5,
                         headers=bearer(running_hub.mint_token("integration"))).json()["items"]
    return sum(1 for m in items if m["sender"] == "JUSTICE")


@pytest.fixture
def added(running_hub):
    """added() -> messages accepted from JUSTICE since the test began."""
    before = stored(running_hub)
    return lambda: stored(running_hub) - before


@pytest.fixture
def ids() -> dict[str, str]:
    """A message id and a Justice reference no other test of the module uses (`demande(pki_dir, **ids)`)."""
    n = next(_numbers)
    return {"message_id": f"MJ-DS-TEST-{n:06d}", "reference": f"MJ-2026-T{n:05d}"}


def test_wsdl_is_served_with_the_requested_address_and_its_schemas(running_hub, caller):
    assert caller.address == f"{running_hub.url}/soap/JUSTICE"
    assert OPERATION in caller.binding._operations
    wsdl = etree.fromstring(requests.get(f"{running_hub.url}/soap/JUSTICE?wsdl", timeout=5).content)
    locations = {i.get("schemaLocation") for i in wsdl.iter("{http://www.w3.org/2001/XMLSchema}import")}
    assert locations == {f"{running_hub.url}/soap/schemas/partners/justice/plis-judiciaires.xsd",
                         f"{running_hub.url}/soap/schemas/canonical/envelope.xsd"}
    assert requests.get(f"{running_hub.url}/soap/schemas/canonical/types/common.xsd", timeout=5).status_code == 200
    for path in ("/soap/schemas/../config/partners/JUSTICE.yaml", "/soap/schemas/%2e%2e/%2e%2e/pyproject.toml",
                 "/soap/schemas/..%2fhub%2fjustice-requests.wsdl", "/soap/schemas/hub/justice-requests.wsdl",
                 "/soap/schemas/%2e%2e/schemas/canonical/missing.xsd", "/soap/NARSA?wsdl", "/soap/JUSTICE"):
        assert requests.get(f"{running_hub.url}{path}", timeout=5).status_code == 404, path


def test_accepted_document_gets_a_signed_receipt_and_a_duplicate_the_same(running_hub, caller, pki_dir,
                                                                             hub_certificate, ids):
    document = demande(pki_dir, **ids)
    first = caller.call(document)
    assert first.status_code == 200, first.text
    assert first.headers["X-Duplicate"] == "false"
    assert caller.reply(first).MessageId == ids["message_id"]  # zeep reads the receipt with the WSDL's types
    receipt = verify(parse_envelope(first.content, max_bytes=1 << 20), hub_certificate, signer_name="hub")
    assert receipt.tag == f"{{{ENVELOPE_NS}}}Receipt"
    assert receipt.findtext(f"{{{ENVELOPE_NS}}}Sender") == "JUSTICE"
    again = caller.call(document)
    assert again.status_code == 200 and again.headers["X-Duplicate"] == "true"
    assert again.content == first.content
    message = requests.get(f"{running_hub.url}/api/v1/messages/{ids['message_id']}", params={"sender": "JUSTICE"},
                           timeout=5, headers=bearer(running_hub.mint_token("integration"))).json()
    assert message["type"] == "JudicialServiceRequest" and message["correlation_id"] == ids["reference"]
    assert message["in_reply_to"] is None and message["recipient"] == "REGISTRY"
    assert [e["event"] for e in message["timeline"]].count("DUPLICATE") == 1


def test_same_id_with_other_bytes_is_a_client_fault(running_hub, caller, pki_dir, ids, added):
    assert caller.call(demande(pki_dir, **ids)).status_code == 200
    response = caller.call(demande(pki_dir, **ids, court="TPI-RABAT"))
    assert response.status_code == 409
    with pytest.raises(zeep.exceptions.Fault) as raised:
        caller.reply(response)
    assert raised.value.code == "soap:Client"
    assert "already accepted with other content" in raised.value.message
    assert added() == 1


def _altered(pki_dir) -> bytes:
    return demande(pki_dir).replace(b"BK123456", b"BK654321")


@pytest.mark.parametrize("name, build, expected", [
    ("altered after signing", lambda caller, pki_dir: caller.envelope_for(_altered(pki_dir)), "altered"),
    ("signed by someone else", lambda caller, pki_dir: caller.envelope_for(demande(pki_dir, signed_by="REGISTRY")),
     "does not verify as JUSTICE"),
    ("unsigned", lambda caller, pki_dir: caller.envelope_for(demande(pki_dir, signed_by=None)), "not signed"),
    ("schema-invalid", lambda caller, pki_dir: caller.envelope_for(demande(pki_dir, cnie="123")),
     "not valid against schema"),
    ("malformed", lambda caller, pki_dir: caller.envelope_for(demande(pki_dir))[:-40], "not well-formed"),
    ("doctype", lambda caller, pki_dir: b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n'
     + caller.envelope_for(demande(pki_dir)).split(b"?>", 1)[1], "DOCTYPE"),
    ("not an envelope", lambda caller, pki_dir: demande(pki_dir), "expected a SOAP 1.1 Envelope"),
])
def test_refused_documents_are_client_faults_naming_the_problem(running_hub, caller, pki_dir, name, build, expected,
                                                                added):
    response = caller.post(build(caller, pki_dir))
    assert response.status_code == 400, name
    fault = fault_of(response)
    assert fault.code == "soap:Client" and not fault.transient
    assert expected in fault.string, fault.string
    assert fault.problems, "the fault's detail lists the problems"
    assert added() == 0


def test_schema_problems_point_at_the_line_in_the_envelope_as_sent(caller, pki_dir):
    data = caller.envelope_for(demande(pki_dir, signed_by=None).replace(b"<NumeroDossier>", b"\n\n<NumeroDossier>"))
    data = data.replace(b"<CNIE>BK123456</CNIE>", b"<CNIE>123</CNIE>").replace(b"Body>", b"Body>\n\n\n", 1)
    fault = fault_of(caller.post(data))
    line = next(n for n, text in enumerate(data.split(b"\n"), 1) if b"<CNIE>123" in text)
    assert any(p.line == line for p in fault.problems), (line, fault.problems)


def test_size_and_content_type_are_checked_before_reading(running_hub, caller, pki_dir, added):
    wrong_type = caller.post(caller.envelope_for(demande(pki_dir)), content_type="application/json")
    assert wrong_type.status_code == 415
    assert fault_of(wrong_type).code == "soap:Client" and "text/xml" in fault_of(wrong_type).string
    oversize = caller.post(b"<soap:Envelope>" + b" " * (1 << 20) + b"</soap:Envelope>")
    assert oversize.status_code == 413
    assert fault_of(oversize).code == "soap:Client" and "limit" in fault_of(oversize).string
    assert added() == 0


@pytest.mark.parametrize("code", ["NARSA", "NOBODY"])
def test_partner_without_a_soap_endpoint_gets_a_fault(running_hub, caller, pki_dir, code):
    response = requests.post(f"{running_hub.url}/soap/{code}", data=caller.envelope_for(demande(pki_dir)),
                             headers={"Content-Type": "text/xml"}, timeout=5)
    assert response.status_code == 403
    fault = fault_of(response)
    assert fault.code == "soap:Client" and "not a partner that calls the hub over SOAP" in fault.string


@pytest.mark.private_hub  # takes the table away under its hub
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_storage_failure_is_a_transient_server_fault(running_hub, caller, pki_dir, settings):
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as db:
        db.execute("ALTER TABLE messages RENAME TO messages_away")
    response = caller.call(demande(pki_dir))
    fault = fault_of(response)
    assert response.status_code == 500 and fault.code == "soap:Server"
    assert fault.transient and fault.retry_after > 0
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as db:
        db.execute("ALTER TABLE messages_away RENAME TO messages")
    assert caller.call(demande(pki_dir)).status_code == 200


# -- the door's own limits: every error a fault, one Body, a bounded Header, mustUnderstand, replays, junk ----

def _refusal_rows(running_hub) -> int:
    from sqlalchemy import func, select
    from hub.store.models import Refusal
    with running_hub.hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(Refusal).where(Refusal.channel == "soap"))


def _metric(running_hub, name: str, **labels) -> float:
    text = requests.get(f"{running_hub.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("code", ["%00", "%01", "A%14B", "%E2%80%AE", "A%0D%0AB"])
def test_control_characters_in_the_endpoint_are_a_client_fault(running_hub, caller, pki_dir, code):
    response = requests.post(f"{running_hub.url}/soap/{code}", data=caller.envelope_for(demande(pki_dir)),
                             headers={"Content-Type": "text/xml"}, timeout=5)
    assert response.status_code == 403 and response.headers["content-type"].startswith("text/xml"), response.text
    fault = fault_of(response)
    assert fault.code == "soap:Client" and "not a partner that calls the hub over SOAP" in fault.string
    assert all("\\u00" in p.path or "\\u202e" in p.path for p in fault.problems), fault.problems


def _with_header(envelope: bytes, header: bytes) -> bytes:
    head, _, rest = envelope.partition(b"<soap-env:Body")
    assert rest, envelope[:300]
    return head + b"<soap-env:Header>" + header + b"</soap-env:Header><soap-env:Body" + rest


def test_an_envelope_with_two_bodies_is_refused(caller, pki_dir, ids, added):
    envelope = caller.envelope_for(demande(pki_dir, **ids))
    twice = envelope.replace(b"</soap-env:Envelope>", b"<soap-env:Body><x/></soap-env:Body></soap-env:Envelope>")
    response = caller.post(twice)
    assert response.status_code == 400
    fault = fault_of(response)
    assert fault.code == "soap:Client" and "exactly one Body" in fault.string
    assert added() == 0


def test_a_large_header_is_refused(caller, pki_dir, ids, added):
    envelope = _with_header(caller.envelope_for(demande(pki_dir, **ids)),
                            b'<h:Pad xmlns:h="urn:x">' + b"p" * 900_000 + b"</h:Pad>")
    response = caller.post(envelope)
    assert response.status_code == 413 and fault_of(response).code == "soap:Client"
    assert "soap:Header" in fault_of(response).string and added() == 0


def test_a_must_understand_header_is_a_must_understand_fault(caller, pki_dir, ids, added):
    security = (b'<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-'
                b'secext-1.0.xsd" soap-env:mustUnderstand="1"><wsse:UsernameToken/></wsse:Security>')
    response = caller.post(_with_header(caller.envelope_for(demande(pki_dir, **ids)), security))
    assert response.status_code == 400
    fault = fault_of(response)
    assert fault.code == "soap:MustUnderstand" and "Security" in fault.string
    assert added() == 0
    optional = security.replace(b' soap-env:mustUnderstand="1"', b"")
    assert caller.post(_with_header(caller.envelope_for(demande(pki_dir, **ids)), optional)).status_code == 200


def test_replays_are_counted_not_sealed_one_by_one(running_hub, caller, pki_dir, ids):
    document = demande(pki_dir, **ids)
    assert caller.call(document).status_code == 200
    before = _metric(running_hub, "hub_messages_duplicate_total", door="soap")
    for _ in range(5):
        assert caller.call(document).headers["X-Duplicate"] == "true"
    assert _metric(running_hub, "hub_messages_duplicate_total", door="soap") == before + 5
    message = requests.get(f"{running_hub.url}/api/v1/messages/{ids['message_id']}", params={"sender": "JUSTICE"},
                           timeout=5, headers=bearer(running_hub.mint_token("integration"))).json()
    assert [e["event"] for e in message["timeline"]].count("DUPLICATE") == 1


def test_junk_endpoints_are_counted_and_recorded_at_most_once_a_minute(running_hub):
    rows = _refusal_rows(running_hub)
    counted = _metric(running_hub, "hub_messages_refused_total", door="soap")
    for n in range(10):
        response = requests.post(f"{running_hub.url}/soap/JUNK{n}X", data=b"<x/>",
                                 headers={"Content-Type": "text/xml"}, timeout=5)
        assert response.status_code == 403 and fault_of(response).code == "soap:Client"
    assert _refusal_rows(running_hub) - rows <= 1
    assert _metric(running_hub, "hub_messages_refused_total", door="soap") == counted + 10


@pytest.mark.parametrize("action", ['"urn:ma:gov:consular:hub:dgsn-callbacks:1#NotifyPassportStatus"', '"urn:x#Nothing"'])
def test_a_soap_action_that_is_not_the_documents_operation_is_refused(running_hub, caller, pki_dir, ids, added,
                                                                      action):
    response = requests.post(caller.address, data=caller.envelope_for(demande(pki_dir, **ids)), timeout=5,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action})
    assert response.status_code == 400
    fault = fault_of(response)
    assert fault.code == "soap:Client" and "SOAPAction" in fault.string
    assert added() == 0

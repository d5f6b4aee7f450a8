"""POST /api/v1/messages over real HTTP: acceptance, receipts, deduplication and every kind of bad input.

The module's tests share one hub, each with a case reference of its own; those that count every message
the hub holds have a hub of their own."""
from __future__ import annotations

import hashlib
import itertools

import pytest
from lxml import etree

from hub.trust import pki
from hub.trust.signing import verify
from hub.xml.safe import to_bytes
from sigtools import narsa_result
from support import licence_request, replace_text, signer_for, strip_signature

XML = {"Content-Type": "application/xml"}
pytestmark = pytest.mark.shared_hub
_references = itertools.count(1)


@pytest.fixture
def reference() -> str:
    """A case reference no other test of the module uses (the message id is REGISTRY-<reference>)."""
    return f"LIC-2026-{next(_references):06d}"


def post(client, data: bytes, headers=XML):
    return client.post("/api/v1/messages", content=data, headers=headers)


def test_accepted_message_gets_a_signed_receipt(client, pki_dir, reference):
    data = licence_request(pki_dir, reference=reference)
    response = post(client, data)
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/xml")
    receipt = etree.fromstring(response.content)
    signed = verify(receipt, pki.load_certificate(str(pki_dir / "hub.crt")), signer_name="hub")
    ns = "{urn:ma:gov:consular:hub:envelope:1}"
    assert signed.findtext(f"{ns}MessageId") == f"REGISTRY-{reference}"
    assert signed.findtext(f"{ns}Digest") == hashlib.sha256(data).hexdigest()
    state = client.get(f"/api/v1/messages/REGISTRY-{reference}").json()
    assert state["state"] == "ACCEPTED" or state["state"] == "DELIVERED" or state["deliveries"]
    assert [e["event"] for e in state["timeline"]][:5] == ["RECEIVED", "VALIDATED", "VERIFIED", "ACCEPTED", "QUEUED"]


@pytest.mark.private_hub  # counts every message the hub holds
def test_same_id_same_bytes_returns_first_receipt_and_is_not_processed_twice(client, pki_dir, running_hub):
    data = licence_request(pki_dir)
    first, second = post(client, data), post(client, data)
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    assert second.headers["x-duplicate"] == "true"
    detail = client.get("/api/v1/messages/REGISTRY-LIC-2026-000001").json()
    assert len(detail["deliveries"]) == 1
    assert client.get("/api/v1/messages").json()["total"] == 1


def test_same_id_other_bytes_is_409(client, pki_dir, reference):
    assert post(client, licence_request(pki_dir, reference=reference)).status_code == 202
    other = licence_request(pki_dir, reference=reference, number="12/345674")  # same case reference -> same message id
    response = post(client, other)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "already accepted with other content" in response.json()["detail"]


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def test_altered_signed_content_is_refused(client, pki_dir):
    tampered = replace_text(licence_request(pki_dir), "12/345673", "12/345679")
    body = _problem(post(client, tampered), 400)
    assert body["title"] == "Signature verification failed"
    assert "altered" in body["detail"]


def test_unsigned_message_is_refused(client, pki_dir):
    body = _problem(post(client, strip_signature(licence_request(pki_dir))), 400)
    assert "not signed" in body["detail"]


def test_message_signed_by_another_party_is_refused(client, pki_dir):
    body = _problem(post(client, licence_request(pki_dir, signed_by="NARSA")), 400)
    assert "REGISTRY" in body["detail"]


def test_malformed_xml_names_the_line(client):
    body = _problem(post(client, b"<?xml version='1.0'?>\n<env:Message xmlns:env='x'>\n<unclosed>\n</env:Message>"), 400)
    assert body["title"] == "Malformed XML"
    assert any(e.get("line") for e in body["errors"])


def test_schema_invalid_lists_each_error_with_line_and_path(client, pki_dir):
    data = replace_text(licence_request(pki_dir), "<lic:Post>FR-PARIS</lic:Post>", "<lic:Post>paris!</lic:Post>")
    body = _problem(post(client, data), 400)
    assert body["title"] == "Schema validation failed"
    error = body["errors"][0]
    assert error["line"] >= 1 and "Post" in error["path"]


def test_doctype_and_entities_are_refused(client):
    for data in (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>',
                 b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><m>&lol2;</m>'):
        body = _problem(post(client, data), 400)
        assert "DOCTYPE" in body["detail"]


def test_oversized_message_is_413(client, running_hub):
    big = b"<m>" + b"x" * (running_hub.hub.settings.max_message_bytes + 1) + b"</m>"
    _problem(post(client, big), 413)


def test_other_content_type_is_415(client, pki_dir):
    _problem(post(client, licence_request(pki_dir), headers={"Content-Type": "application/json"}), 415)


def test_unknown_message_is_404(client):
    _problem(client.get("/api/v1/messages/NOPE"), 404)


@pytest.mark.private_hub  # counts every message the hub holds
def test_bad_input_loses_and_changes_nothing_already_accepted(client, pki_dir, running_hub):
    good = licence_request(pki_dir)
    receipt = post(client, good).content
    for bad in (replace_text(good, "12/345673", "12/345679"), b"<junk", strip_signature(good),
                licence_request(pki_dir, number="12/345674")):
        assert post(client, bad).status_code in (400, 409)
    assert client.get("/api/v1/messages").json()["total"] == 1
    from hub.store.models import Message
    with running_hub.hub.sessions() as session:
        stored = session.query(Message).one()
        assert stored.received_bytes == good and stored.receipt == receipt


def test_malformed_signature_element_is_400_not_500(client, pki_dir):
    data = licence_request(pki_dir)
    start = data.index(b"<ds:SignatureValue>") + len(b"<ds:SignatureValue>")
    end = data.index(b"</ds:SignatureValue>")
    broken = data[:start] + b"not base64 !!" + data[end:]
    body = _problem(post(client, broken), 400)
    assert body["title"] == "Signature verification failed"
    empty_sig = strip_signature(data).replace(b"</lic:LicenceAuthenticationRequest>",
                                              b"<ds:Signature xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/>"
                                              b"</lic:LicenceAuthenticationRequest>")
    _problem(post(client, empty_sig), 400)


def test_the_intake_front_answers_as_the_fastapi_route(client, pki_dir, reference):
    """POST /api/v1/messages is served in front of FastAPI's routing (hub/api/intake_front.py); with a query
    string the same request goes through the route. Both must answer alike, refusals and receipts."""
    data = licence_request(pki_dir, reference=reference)
    other = licence_request(pki_dir, reference=reference, number="12/345674")
    cases = {"malformed": b"<Envelope", "tampered": replace_text(data, "12/345673", "12/345679"),
             "unsigned": strip_signature(data)}
    for name, body in cases.items():
        front, route = post(client, body), client.post("/api/v1/messages?via=route", content=body, headers=XML)
        assert (front.status_code, front.headers["content-type"]) == (route.status_code,
                                                                      route.headers["content-type"]), name
        assert front.status_code == 400 and front.json() == route.json(), name
    first = post(client, data)
    again = client.post("/api/v1/messages?via=route", content=data, headers=XML)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.content == again.content and again.headers["x-duplicate"] == "true"
    conflict = [post(client, other), client.post("/api/v1/messages?via=route", content=other, headers=XML)]
    assert [r.status_code for r in conflict] == [409, 409] and conflict[0].json() == conflict[1].json()
    plain = client.post("/api/v1/messages", content=b"text", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415  # not XML: the route answers it, as before
    anonymous = client.post("/api/v1/messages", content=data, headers={**XML, "Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    # another path is FastAPI's: the trailing slash is redirected, not taken in
    assert client.post("/api/v1/messages/", content=data, headers=XML, follow_redirects=False).status_code == 307


def test_the_intake_front_answers_partner_documents_as_the_fastapi_route(client, pki_dir):
    """POST /api/v1/partners/{partner}/messages, served in front of FastAPI as POST /api/v1/messages is."""
    signed = to_bytes(narsa_result(signer_for(pki_dir, "NARSA")))
    for name, body in {"malformed": b"<Resultat", "tampered": signed.replace(b"NON_AUTHENTIQUE", b"AUTHENTIQUE")}.items():
        front = client.post("/api/v1/partners/narsa/messages", content=body, headers=XML)
        route = client.post("/api/v1/partners/narsa/messages?via=route", content=body, headers=XML)
        assert front.status_code == route.status_code == 400, (name, front.text)
        assert front.json() == route.json(), name
    nul = client.post("/api/v1/partners/NA%00RSA/messages", content=signed, headers=XML)  # not the front's: FastAPI's
    assert nul.status_code == 400 and "path parameter partner" in nul.json()["detail"]

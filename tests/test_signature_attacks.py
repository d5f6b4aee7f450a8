"""Attacks on the hub's signature verifier, each through a real door of the running hub: the REST
canonical intake (POST /api/v1/messages), the REST partner door (POST /api/v1/partners/NARSA/messages)
and the SOAP door (POST /soap/JUSTICE). Every attack is refused with a 4xx naming what is wrong, and
nothing of it is stored.

Hand-made signatures (sigtools.forge) are cryptographically valid — xmlsec1 verifies them — so a
refusal proves the hub's policy (algorithms, reference, structure) and not a broken signature.

The REGISTRY party is configured, for this module, with odd certificates besides its development one:
expired, not yet valid, without a signing key usage, the two of a rotation, and a CA of its own.

The module's tests share one hub (SQLite: what is under test is the verifier, which no database changes):
each counts what it stored and refused against what was there before it; those that accept a message
have a hub of their own.
"""
from __future__ import annotations

import copy
import datetime as dt

import httpx
import pytest
import yaml
from lxml import etree
from lxml.builder import ElementMaker

import sigtools as st
from hub.errors import SignatureInvalid
from hub.store.models import Message, Refusal
from hub.trust.signing import DS_NS, Signer
from sigtools import narsa_result, post_partner
from support import replace_text, signer_for

XML = {"Content-Type": "application/xml"}
ENV_NS = "{urn:ma:gov:consular:hub:envelope:1}"
LIC = "{urn:ma:gov:consular:licence:1}"


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """Keys and certificates for REGISTRY that the module's configuration pins, or does not."""
    directory = tmp_path_factory.mktemp("odd-pki")
    dev_ca, registry_ca, stranger_ca = st.make_ca("another dev CA"), st.make_ca("REGISTRY issuing CA"), st.make_ca("rogue CA")
    made = {
        "expired": st.issue(dev_ca, "REGISTRY", days_from=-400, days_to=-1),
        "not_yet_valid": st.issue(dev_ca, "REGISTRY", days_from=2, days_to=400),
        "encrypt_only": st.issue(dev_ca, "REGISTRY", usage="encrypt"),
        "rotation_old": st.issue(dev_ca, "REGISTRY", days_from=-300, days_to=20),   # expiring within 30 days
        "rotation_new": st.issue(dev_ca, "REGISTRY", days_from=-1, days_to=700),
        "not_pinned": st.issue(dev_ca, "REGISTRY"),
        "from_ca": st.issue(registry_ca, "REGISTRY"),
        "from_ca_other_cn": st.issue(registry_ca, "DGSN"),
        "from_ca_expired": st.issue(registry_ca, "REGISTRY", days_from=-100, days_to=-2),
        "from_rogue_ca": st.issue(stranger_ca, "REGISTRY"),
    }
    paths = {name: st.write_pem(directory, name, key, cert) for name, (key, cert) in made.items()}
    paths["registry_ca"] = st.write_pem(directory, "registry_ca", None, registry_ca[1])
    signers = {name: Signer(key, cert) for name, (key, cert) in made.items()}
    return {"paths": paths, "signers": signers, "keys": made}


PINNED = ["expired", "not_yet_valid", "encrypt_only", "rotation_old", "rotation_new"]


pytestmark = pytest.mark.shared_hub


@pytest.fixture
def settings(settings, odd):
    """conftest's settings, with REGISTRY's odd certificates pinned and its CA configured."""
    path = settings.config_dir / "partners" / "REGISTRY.yaml"
    party = yaml.safe_load(path.read_text(encoding="utf-8"))
    odd_ones = [str(odd["paths"][name]) for name in PINNED]
    party["certificates"] = [*[c for c in party["certificates"] if c not in odd_ones], *odd_ones]
    party["ca"] = str(odd["paths"]["registry_ca"])
    path.write_text(yaml.safe_dump(party, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return settings


def post(client, data: bytes):
    return client.post("/api/v1/messages", content=data, headers=XML)


def refused(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    for word in words:
        assert word in body["detail"], f"{word!r} not in {body['detail']!r}"
    return body


def stored(running_hub) -> tuple[int, int]:
    with running_hub.hub.sessions() as session:
        return session.query(Message).count(), session.query(Refusal).count()


@pytest.fixture
def added(running_hub):
    """added() -> (messages, refusals) stored since the test began."""
    before = stored(running_hub)
    return lambda: tuple(now - then for now, then in zip(stored(running_hub), before))


@pytest.fixture
def good(pki_dir) -> bytes:
    return st.licence_request(signer_for(pki_dir, "REGISTRY"))


# -- content and wrapping --------------------------------------------------------------------------------

def test_altered_content_is_refused(client, good, running_hub, added):
    body = refused(post(client, replace_text(good, "12/345673", "12/345679")), 400, "altered after REGISTRY signed it")
    assert body["title"] == "Signature verification failed"
    assert added() == (0, 1)


def verifier_refuses(running_hub, document: etree._Element, party: str, *words: str) -> None:
    """The verifier itself (TrustStore.verify, as intake calls it) refuses `document`, whatever the schema says."""
    with pytest.raises(SignatureInvalid) as info:
        running_hub.hub.trust.verify(document, party)
    for word in words:
        assert word in info.value.detail, f"{word!r} not in {info.value.detail!r}"


def test_reference_to_one_element_by_id_is_refused(client, pki_dir, running_hub, added):
    """Signature wrapping: a valid signature over one element (#id) lets the rest be changed. The
    canonical schemas allow no Id attribute (refused there first); the verifier refuses it on its own."""
    _, document = st.business(st.licence_request())
    document.find(f"{LIC}Licence").set("Id", "signed-part")
    registry = signer_for(pki_dir, "REGISTRY")
    forged = st.forge(document, registry.key, registry.certificate, uri="#signed-part")
    forged.find(f"{LIC}Post").text = "ES-MADRID"  # outside the signed part
    refused(post(client, st.with_document(st.licence_request(), forged)), 400)
    verifier_refuses(running_hub, forged, "REGISTRY", 'must cover the whole document (Reference URI="")', "#signed-part")
    assert added()[0] == 0


def test_reference_to_a_wrapped_original_inside_the_signature_is_refused(client, pki_dir, running_hub):
    """The classic wrapping: the signature covers a ds:Object (Id="obj") holding the original, while the
    document around it says something else."""
    _, document = st.business(st.licence_request())
    registry = signer_for(pki_dir, "REGISTRY")
    forged = st.forge(document, registry.key, registry.certificate)
    signature = forged.find(f"{{{DS_NS}}}Signature")
    original = copy.deepcopy(document)
    etree.SubElement(signature, f"{{{DS_NS}}}Object", Id="obj").append(original)
    forged.find(f"{LIC}Licence/{LIC}Number").text = "12/345679"
    refused(post(client, st.with_document(st.licence_request(), forged)), 400, "ds:Signature must hold", "Object")
    verifier_refuses(running_hub, forged, "REGISTRY", "Object")


def test_original_moved_into_an_object_and_content_replaced_is_refused(client, good):
    """The signed original hidden in a ds:Object of its own signature, the visible content altered."""
    root, document = st.business(good)
    signature = document.find(f"{{{DS_NS}}}Signature")
    hidden = etree.SubElement(signature, f"{{{DS_NS}}}Object")
    original = copy.deepcopy(document)
    original.remove(original.find(f"{{{DS_NS}}}Signature"))
    hidden.append(original)
    document.find(f"{LIC}Licence/{LIC}Number").text = "12/345679"
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    refused(post(client, data), 400, "ds:Signature must hold", "Object")


def test_signature_moved_onto_another_element_is_refused(client, good, running_hub, added):
    root, document = st.business(good)
    signature = document.find(f"{{{DS_NS}}}Signature")
    document.find(f"{LIC}Holder").append(signature)
    document.find(f"{LIC}Licence/{LIC}Number").text = "12/345679"
    refused(post(client, etree.tostring(root)), 400)  # the schema has no place for it there
    verifier_refuses(running_hub, document, "REGISTRY", "not signed")
    verifier_refuses(running_hub, document.find(f"{LIC}Holder"), "REGISTRY", "altered")
    assert added()[0] == 0


def test_a_second_signature_is_refused(client, good, pki_dir, running_hub):
    root, document = st.business(good)
    narsa = signer_for(pki_dir, "NARSA")
    document.append(st.forge(document, narsa.key, narsa.certificate).find(f"{{{DS_NS}}}Signature"))
    refused(post(client, etree.tostring(root)), 400)
    verifier_refuses(running_hub, document, "REGISTRY", "2 signatures")


@pytest.mark.private_hub  # looks at the one message its hub holds
def test_only_the_signed_content_is_kept_as_canonical(client, good, running_hub):
    """A comment is outside what exclusive c14n signs: accepted, but the canonical form the hub routes
    and maps is rebuilt from the signed content only, so the comment is gone from it."""
    data = replace_text(good, "<lic:Number>12/345673</lic:Number>", "<lic:Number>12/34<!--x-->5673</lic:Number>")
    assert post(client, data).status_code == 202
    with running_hub.hub.sessions() as session:
        message = session.query(Message).one()
        assert message.received_bytes == data and b"<!--x-->" not in message.canonical_bytes
        canonical = etree.fromstring(message.canonical_bytes)
    document = canonical.find(f"{ENV_NS}Body")[0]
    assert document.findtext(f"{LIC}Licence/{LIC}Number") == "12/345673"
    running_hub.hub.trust.verify(document, "REGISTRY")  # the kept form still carries a valid signature


@pytest.mark.parametrize("key_value", [
    "<ds:RSAKeyValue><ds:Modulus/><ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue>",
    "<ds:ECKeyValue xmlns:ds=\"http://www.w3.org/2009/xmldsig11#\"><ds:NamedCurve URI=\"urn:x\"/>"
    "<ds:PublicKey/></ds:ECKeyValue>",
], ids=["empty-rsa-modulus", "unknown-ec-curve"])
def test_unreadable_key_value_outside_the_signed_content_is_a_clear_refusal(client, good, running_hub, key_value,
                                                                             added):
    """KeyInfo is not signed: whatever it holds must give a 400 naming the signature, never a 500."""
    root, document = st.business(good)
    key_info = document.find(f"{{{DS_NS}}}Signature/{{{DS_NS}}}KeyInfo")
    key_info.insert(0, etree.fromstring(f'<ds:KeyValue xmlns:ds="{DS_NS}">{key_value}</ds:KeyValue>'))
    refused(post(client, etree.tostring(root)), 400, "REGISTRY")
    assert added() == (0, 1)


# -- algorithms --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (dict(method=st.RSA_SHA1), ["unexpected signature method", "rsa-sha1"]),
    (dict(digest=st.SHA1), ["unexpected digest", "sha1"]),
    (dict(c14n=st.INCLUSIVE_C14N, transforms=(st.ENVELOPED, st.INCLUSIVE_C14N)), ["unexpected canonicalization"]),
    (dict(transforms=(st.ENVELOPED, st.INCLUSIVE_C14N)), ["transforms must be exactly"]),
    (dict(transforms=(st.EXC_C14N,)), ["ds:Transforms must hold"]),
    (dict(method=st.HMAC_SHA256, hmac_key=b"guessable"), ["unexpected signature method", "hmac-sha256"]),
], ids=["rsa-sha1", "sha1-digest", "inclusive-c14n", "inclusive-c14n-transform", "no-enveloped-transform", "hmac"])
def test_unexpected_algorithm_is_refused(client, pki_dir, running_hub, change, words, added):
    registry = signer_for(pki_dir, "REGISTRY")
    _, document = st.business(st.licence_request())
    data = st.with_document(st.licence_request(), st.forge(document, registry.key, registry.certificate, **change))
    refused(post(client, data), 400, *words)
    assert added()[0] == 0


# -- certificates --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("expired", ["expired on"]),
    ("not_yet_valid", ["is not valid before"]),
    ("encrypt_only", ["not allowed to sign", "key usage"]),
], ids=["expired", "not-yet-valid", "wrong-key-usage"])
def test_pinned_certificate_not_usable_now_is_refused(client, odd, running_hub, name, words, added):
    data = st.licence_request(odd["signers"][name])
    refused(post(client, data), 400, "REGISTRY's signature was made with its pinned certificate", *words)
    assert added()[0] == 0


def test_rotation_accepts_old_and_new_and_refuses_a_third(client, odd, running_hub, added):
    for n, name in enumerate(["rotation_old", "rotation_new"]):
        response = post(client, st.licence_request(odd["signers"][name], reference=f"LIC-2026-00010{n}"))
        assert response.status_code == 202, (name, response.text)
    # same CN, same issuer as the two pinned ones, but not pinned (and not from REGISTRY's CA)
    refused(post(client, st.licence_request(odd["signers"]["not_pinned"], reference="LIC-2026-000102")), 400,
            "REGISTRY", "was not issued by REGISTRY's CA")
    assert added()[0] == 2


def test_ca_issued_certificate_named_like_the_party_is_accepted(client, odd):
    response = post(client, st.licence_request(odd["signers"]["from_ca"], reference="LIC-2026-000103"))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("name, words", [
    ("from_ca_other_cn", ["names 'DGSN' as its subject CN, not 'REGISTRY'"]),
    ("from_ca_expired", ["expired on"]),
    ("from_rogue_ca", ["was not issued by REGISTRY's CA"]),
], ids=["other-cn", "expired", "rogue-ca"])
def test_ca_mode_refuses_what_the_ca_does_not_vouch_for(client, odd, running_hub, name, words, added):
    refused(post(client, st.licence_request(odd["signers"][name])), 400, *words)
    assert added()[0] == 0


# -- who signed, and what they may send ------------------------------------------------------------------------

def test_valid_signature_of_another_partner_than_the_sender_is_refused(client, pki_dir, running_hub, added):
    body = refused(post(client, st.licence_request(signer_for(pki_dir, "NARSA"))), 400,
                   "signed by NARSA, not by the message's sender REGISTRY")
    assert body["title"] == "Signature verification failed"
    assert added() == (0, 1)


def test_type_the_sender_may_not_send_is_refused_after_its_signature_verified(client, pki_dir, running_hub, added):
    """NARSA, correctly signing as itself, sends a request only the registry may send: 403."""
    unsigned = st.licence_request().replace(b"<env:Sender>REGISTRY</env:Sender>", b"<env:Sender>NARSA</env:Sender>")
    data = st.sign_document(unsigned, signer_for(pki_dir, "NARSA"))  # header and Binding both say NARSA
    body = refused(post(client, data), 403, "NARSA may not send LicenceAuthenticationRequest")
    assert body["title"] == "Not allowed"
    assert added() == (0, 1)


# -- the REST partner door ---------------------------------------------------------------------------------------

def test_partner_door_refuses_attacks_and_accepts_the_real_thing(client, pki_dir, good, running_hub, added):
    assert post(client, good).status_code == 202  # the request NARSA answers
    narsa = signer_for(pki_dir, "NARSA")
    altered = etree.tostring(narsa_result(narsa)).replace(b"NON_AUTHENTIQUE", b"AUTHENTIQUE")
    refused(post_partner(client, altered), 400, "altered after NARSA signed it")
    refused(post_partner(client, narsa_result(signer_for(pki_dir, "DGSN"))), 400,
            "signed by DGSN, not by the message's sender NARSA")
    sha1 = st.forge(narsa_result(None), narsa.key, narsa.certificate, method=st.RSA_SHA1)
    refused(post_partner(client, sha1), 400, "unexpected signature method")
    refused(post_partner(client, narsa_result(None)), 400, "not signed")
    assert added() == (1, 4)
    response = post_partner(client, narsa_result(narsa))
    assert response.status_code == 202, response.text
    assert added()[0] == 2


# -- the SOAP door -------------------------------------------------------------------------------------------------

J_NS = "urn:ma:justice:plis-judiciaires:1"
J = ElementMaker(namespace=J_NS, nsmap={None: J_NS})
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def demande(signer: Signer | None) -> etree._Element:
    document = J.DemandeSignification(
        J.IdentifiantMessage("MJ-DS-SIG-000001"), J.ReferenceMJ("MJ-2026-S00001"),
        J.DateEmission(dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()),
        J.Juridiction(J.Code("TPI-CASA"), J.Nom("Tribunal de première instance de Casablanca")),
        J.NumeroDossier("2026/1201/45"), J.TypeActe("CONVOCATION"), J.DateAudience("15/01/2027"),
        J.Destinataire(J.CNIE("BK123456"), J.NomComplet("Youssef El Amrani")),
        J.Acte(J.ContenuChiffre("q83vEjRWeJA=", typeMime="application/pdf", chiffrement="AES-256-GCM")))
    return signer.sign(document) if signer else document


def soap_call(running_hub, document: etree._Element | bytes) -> httpx.Response:
    data = document if isinstance(document, bytes) else etree.tostring(document, encoding="UTF-8")
    envelope = (b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="' + SOAP.encode() + b'"><soap:Body>'
                + data.split(b"?>", 1)[-1] + b"</soap:Body></soap:Envelope>")
    return httpx.post(f"{running_hub.url}/soap/JUSTICE", content=envelope,
                      headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)


def soap_refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 400, response.text
    fault = etree.fromstring(response.content).find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client"
    text = fault.findtext("faultstring")
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return text


def test_soap_door_refuses_attacks_and_accepts_the_real_thing(running_hub, pki_dir, added):
    justice = signer_for(pki_dir, "JUSTICE")
    soap_refused(soap_call(running_hub, etree.tostring(demande(justice)).replace(b"CONVOCATION", b"JUGEMENT")),
                 "altered after JUSTICE signed it")
    soap_refused(soap_call(running_hub, demande(signer_for(pki_dir, "DGSN"))),
                 "signed by DGSN, not by the message's sender JUSTICE")
    forged = st.forge(demande(None), justice.key, justice.certificate, digest=st.SHA1)
    soap_refused(soap_call(running_hub, forged), "unexpected digest")
    wrapped = demande(None)
    wrapped.find(f"{{{J_NS}}}Acte").set("Id", "acte")
    wrapped = st.forge(wrapped, justice.key, justice.certificate, uri="#acte")
    wrapped.find(f"{{{J_NS}}}Destinataire/{{{J_NS}}}CNIE").text = "ZZ999999"
    soap_refused(soap_call(running_hub, wrapped))  # the schema allows no Id: refused there first
    verifier_refuses(running_hub, wrapped, "JUSTICE", 'Reference URI=""')
    assert added() == (0, 4)
    response = soap_call(running_hub, demande(justice))
    assert response.status_code == 200, response.text
    with running_hub.hub.sessions() as session:  # (the registry may answer it at once: count JUSTICE's only)
        assert [m.message_id for m in session.query(Message).filter_by(sender="JUSTICE")] == ["MJ-DS-SIG-000001"]

"""Interoperability with an independent XML-signature implementation: the `xmlsec1` command-line tool.

- what the hub signs (receipts, documents it delivers to partners) verifies with
  `xmlsec1 --verify --pubkey-cert-pem hub.crt` and with `--trusted-pem ca.crt`, for an RSA-2048 hub
  key (the default) and an ECDSA P-256 one (HUB_SIGNING_ALGORITHM=ecdsa-sha256);
- a document a partner signs with `xmlsec1 --sign` (a template with enveloped + exclusive c14n,
  rsa-sha256 or ecdsa-sha256, sha256, X509Data) is accepted by the hub's intake: a canonical
  envelope on POST /api/v1/messages (its header's env:Binding signed with the rest) and a NARSA
  document on POST /api/v1/partners/NARSA/messages; signed by xmlsec1 and then altered, it is refused;
- the new form of what the registry and the hub sign (the header bound into the signed document)
  verifies with xmlsec1.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

import sigtools as st
from sigtools import narsa_result, post_partner
from hub.delivery.workers import render_for_partner
from hub.store.models import Delivery, Message
from hub.trust import pki
from hub.trust.receipts import build_receipt
from hub.settings import Settings
from hub.trust.signing import ECDSA_SHA256, RSA_SHA256, verify
from support import replace_text

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed (make xmlsec1 installs it)")
XML = {"Content-Type": "application/xml"}

TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ds:SignedInfo>
    <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
    <ds:SignatureMethod Algorithm="{method}"/>
    <ds:Reference URI="">
      <ds:Transforms>
        <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      </ds:Transforms>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <ds:DigestValue/>
    </ds:Reference>
  </ds:SignedInfo>
  <ds:SignatureValue/>
  <ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
</ds:Signature>"""


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: interoperability of signatures does not depend on the database."""
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


def xmlsec1(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([XMLSEC1, *args], capture_output=True, text=True, timeout=30)


def xmlsec1_verifies(data: bytes, tmp_path: Path, *key_args: str) -> None:
    path = tmp_path / f"to-verify-{hashlib.sha256(data).hexdigest()[:12]}.xml"
    path.write_bytes(data)
    result = xmlsec1("--verify", *key_args, str(path))
    assert result.returncode == 0, f"xmlsec1 --verify {' '.join(key_args)} failed:\n{result.stderr}"
    assert "OK" in result.stderr and "SignedInfo References (ok/all): 1/1" in result.stderr


def xmlsec1_sign(document: etree._Element, key: Path, cert: Path, tmp_path: Path, *, method: str = RSA_SHA256) -> bytes:
    """`document` signed by xmlsec1 with `key` (its certificate in X509Data), from a template."""
    template = etree.fromstring(etree.tostring(document))
    template.append(etree.fromstring(TEMPLATE.format(method=method)))
    source, output = tmp_path / "template.xml", tmp_path / "signed.xml"
    source.write_bytes(etree.tostring(template, xml_declaration=True, encoding="UTF-8"))
    result = xmlsec1("--sign", "--privkey-pem", f"{key},{cert}", "--output", str(output), str(source))
    assert result.returncode == 0, f"xmlsec1 --sign failed:\n{result.stderr}"
    return output.read_bytes()


# -- what the hub signs verifies with xmlsec1 ---------------------------------------------------------------

def test_hub_receipt_and_delivered_document_verify_with_xmlsec1(client, running_hub, pki_dir, tmp_path):
    from support import licence_request
    response = client.post("/api/v1/messages", content=licence_request(pki_dir), headers=XML)
    assert response.status_code == 202, response.text
    hub_crt, ca_crt = str(pki_dir / "hub.crt"), str(pki_dir / "ca.crt")
    xmlsec1_verifies(response.content, tmp_path, "--pubkey-cert-pem", hub_crt)
    xmlsec1_verifies(response.content, tmp_path, "--trusted-pem", ca_crt)
    with running_hub.hub.sessions() as session:
        message = session.query(Message).one()
        delivery = session.query(Delivery).one()
        session.expunge_all()
    sent = render_for_partner(running_hub.hub, message, delivery)  # the NARSA document, mapped and signed
    assert b"DemandeAuthentification" in sent and b"Binding" not in sent  # the canonical Binding stays canonical
    xmlsec1_verifies(sent, tmp_path, "--pubkey-cert-pem", hub_crt)
    xmlsec1_verifies(sent, tmp_path, "--trusted-pem", ca_crt)
    altered = replace_text(response.content, "REGISTRY-LIC-2026-000001", "REGISTRY-LIC-2026-000002")
    (tmp_path / "altered.xml").write_bytes(altered)
    assert xmlsec1("--verify", "--pubkey-cert-pem", hub_crt, str(tmp_path / "altered.xml")).returncode != 0


def test_bound_canonical_documents_the_registry_and_the_hub_sign_verify_with_xmlsec1(pki_dir, tmp_path):
    """The new form: the registry's request and a partner's answer the hub mapped in and signs on delivery to the
    registry carry the header's env:Binding inside what they sign, and xmlsec1 verifies both."""
    from types import SimpleNamespace
    from hub.xml.envelope import business_document, check_binding, read_header
    from support import licence_request, signer_for
    mapped_in = Path(__file__).parent.parent / "mappings/narsa/cases/licence-result.from-narsa/discrepancy.expected.xml"
    hub = SimpleNamespace(signer=signer_for(pki_dir, "hub"))
    delivered = render_for_partner(hub, SimpleNamespace(canonical=mapped_in.read_bytes()), SimpleNamespace(mapping=None))
    for envelope, signer in ((licence_request(pki_dir), "REGISTRY"), (delivered, "hub")):
        root = etree.fromstring(envelope)
        document = business_document(root)
        check_binding(read_header(root), document)  # the Binding is there, and is the header
        xmlsec1_verifies(etree.tostring(document), tmp_path, "--pubkey-cert-pem", str(pki_dir / f"{signer}.crt"))


def test_ecdsa_hub_key_signs_what_xmlsec1_verifies(tmp_path, pki_dir, monkeypatch):
    """HUB_SIGNING_ALGORITHM=ecdsa-sha256: the development hub key (`hub dev init`) is made P-256, the hub signs
    ecdsa-sha256, xmlsec1 verifies it; an RSA key with that setting stops the hub naming both."""
    from hub.errors import ConfigError
    from hub.engine import Hub
    own_pki = tmp_path / "pki"
    shutil.copytree(pki_dir, own_pki)
    for name in ("hub.key", "hub.crt"):
        (own_pki / name).unlink()
    monkeypatch.setenv("HUB_SIGNING_ALGORITHM", "ecdsa-sha256")
    pki.init_dev_keys(own_pki, [], hub_algorithm="ecdsa-sha256")  # what `hub dev init` makes with this setting
    settings = Settings.from_env(var_dir=tmp_path / "var", pki_dir=own_pki, database_url=f"sqlite:///{tmp_path}/h.db")
    hub = Hub(settings)
    try:
        assert hub.signer.algorithm == "ecdsa-sha256"
        receipt = build_receipt(hub.signer, message_id="M-1", sender="REGISTRY", digest="0" * 64,
                                received_at=dt.datetime.now(dt.timezone.utc))
        assert ECDSA_SHA256.encode() in receipt
        xmlsec1_verifies(receipt, tmp_path, "--pubkey-cert-pem", str(own_pki / "hub.crt"))
        xmlsec1_verifies(receipt, tmp_path, "--trusted-pem", str(own_pki / "ca.crt"))
        verify(etree.fromstring(receipt), hub.signer.certificate, signer_name="hub")
    finally:
        hub.close()
    monkeypatch.setenv("HUB_SIGNING_ALGORITHM", "rsa-sha256")
    with pytest.raises(ConfigError) as info:
        Hub(Settings.from_env(var_dir=tmp_path / "var", pki_dir=own_pki, database_url=f"sqlite:///{tmp_path}/h.db"))
    assert "hub.key" in str(info.value) and "ecdsa-sha256" in str(info.value) and "rsa-sha256" in str(info.value)


# -- what a partner signs with xmlsec1 is accepted by the hub -------------------------------------------------

def test_canonical_envelope_signed_by_xmlsec1_is_accepted_and_altered_refused(client, pki_dir, tmp_path, running_hub):
    envelope = st.licence_request()
    _, document = st.business(envelope)
    assert document.find("{urn:ma:gov:consular:hub:envelope:1}Binding") is not None  # signed by xmlsec1 with the rest
    signed = xmlsec1_sign(document, pki_dir / "REGISTRY.key", pki_dir / "REGISTRY.crt", tmp_path)
    data = st.with_document(envelope, etree.fromstring(signed))
    altered = replace_text(data, "12/345673", "12/345679")
    response = client.post("/api/v1/messages", content=altered, headers=XML)
    assert response.status_code == 400 and "altered after REGISTRY signed it" in response.json()["detail"]
    response = client.post("/api/v1/messages", content=data, headers=XML)
    assert response.status_code == 202, response.text
    detail = client.get("/api/v1/messages/REGISTRY-LIC-2026-000001").json()
    assert "VERIFIED" in [e["event"] for e in detail["timeline"]]


def test_partner_document_signed_by_xmlsec1_is_accepted_and_altered_refused(client, pki_dir, tmp_path):
    from support import licence_request
    assert client.post("/api/v1/messages", content=licence_request(pki_dir), headers=XML).status_code == 202
    signed = xmlsec1_sign(narsa_result(None), pki_dir / "NARSA.key", pki_dir / "NARSA.crt", tmp_path)
    response = post_partner(client, signed.replace(b"NON_AUTHENTIQUE", b"AUTHENTIQUE"))
    assert response.status_code == 400 and "altered after NARSA signed it" in response.json()["detail"]
    response = post_partner(client, signed)
    assert response.status_code == 202, response.text


def test_ecdsa_partner_signature_made_by_xmlsec1_verifies_at_the_hub(tmp_path):
    """A partner whose key is ECDSA P-256 (its certificate pinned): xmlsec1's ecdsa-sha256 signature verifies,
    and the signed content returned is the document without its signature."""
    ca = st.make_ca("partner CA")
    key, cert = st.issue(ca, "NARSA", algorithm="ecdsa-sha256")
    crt = st.write_pem(tmp_path, "narsa-ec", key, cert)
    signed = xmlsec1_sign(narsa_result(None), tmp_path / "narsa-ec.key", crt, tmp_path, method=ECDSA_SHA256)
    element = verify(etree.fromstring(signed), cert, signer_name="NARSA")
    assert element.findtext("{urn:ma:narsa:authentification-permis:1}Verdict") == "NON_AUTHENTIQUE"
    assert element.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None

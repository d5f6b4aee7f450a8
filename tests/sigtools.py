"""Helpers of the signature tests: odd test PKIs (made with `cryptography`), hand-made signatures with
any algorithm or reference, and the documents the attacks start from."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from lxml import etree
from lxml.builder import ElementMaker

from hub.trust.signing import DS_NS, ENVELOPED, EXC_C14N, RSA_SHA256, SHA256, Signer
from registry.models import Case, Citizen
from registry.services import licence

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
INCLUSIVE_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
XPATH_TRANSFORM = "http://www.w3.org/TR/1999/REC-xpath-19991116"
DS = ElementMaker(namespace=DS_NS, nsmap={"ds": DS_NS})
NOW = dt.datetime.now(dt.timezone.utc)


# -- test PKIs ---------------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signature tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key(algorithm: str = "rsa-sha256"):
    return ec.generate_private_key(ec.SECP256R1()) if algorithm == "ecdsa-sha256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(cn: str):
    key = new_key()
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca, cn: str, *, days_from: float = -1, days_to: float = 365, usage: str = "sign",
          algorithm: str = "rsa-sha256"):
    """A key and a certificate for `cn` issued by `ca` = (ca_key, ca_cert), valid from now+days_from to
    now+days_to; usage "sign" (digitalSignature, contentCommitment) or "encrypt" (keyEncipherment only)."""
    ca_key, ca_cert = ca
    key = new_key(algorithm)
    sign = usage == "sign"
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + dt.timedelta(days=days_from)).not_valid_after(NOW + dt.timedelta(days=days_to))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=sign, content_commitment=sign, key_encipherment=not sign,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_pem(directory: Path, name: str, key=None, cert: x509.Certificate | None = None) -> Path:
    """Write <name>.key (when given) and <name>.crt; return the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    if key is not None:
        (directory / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / f"{name}.crt"


# -- documents -----------------------------------------------------------------------------------------

class _NoSigner:
    def sign(self, document):
        return document


def licence_request(signer=None, *, reference: str = "LIC-2026-000001", number: str = "12/345673") -> bytes:
    """A canonical LicenceAuthenticationRequest (Sender REGISTRY) whose document `signer` signs (None: unsigned)."""
    citizen = Citizen(registration_id="MRE-0000042", given_name_latin="Youssef", family_name_latin="El Amrani",
                      given_name_arabic="يوسف", family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12),
                      cnie="BK123456", country="FR", post_code="FR-PARIS")
    case = Case(reference=reference, post_code="FR-PARIS", created_at=dt.datetime(2026, 11, 23, 10, tzinfo=dt.timezone.utc),
                citizen=citizen, details={"number": number, "categories": ["B"], "issue_date": "2010-05-03"})
    return licence.build_request(SimpleNamespace(signer=signer or _NoSigner()), case)


def business(envelope: bytes) -> tuple[etree._Element, etree._Element]:
    """(envelope root, its business document)."""
    root = etree.fromstring(envelope)
    return root, root.find("{urn:ma:gov:consular:hub:envelope:1}Body")[0]


def with_document(envelope: bytes, document: etree._Element) -> bytes:
    """The envelope with its business document replaced by `document`."""
    root, old = business(envelope)
    old.getparent().replace(old, document)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def sign_document(envelope: bytes, signer: Signer) -> bytes:
    _, document = business(envelope)
    return with_document(envelope, signer.sign(document))


# -- hand-made signatures: cryptographically valid, with whatever algorithm or reference -----------------

def _c14n(element: etree._Element, algorithm: str) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=algorithm == EXC_C14N, with_comments=False)


def forge(document: etree._Element, key, cert: x509.Certificate, *, c14n: str = EXC_C14N, method: str = RSA_SHA256,
          digest: str = SHA256, transforms: tuple = (ENVELOPED, EXC_C14N), uri: str = "",
          hmac_key: bytes | None = None) -> etree._Element:
    """A copy of `document` with an enveloped-style ds:Signature as its last child, made by hand with
    exactly the given algorithms and reference (`#id` signs only the element whose Id is id)."""
    document = copy.deepcopy(document)
    for old in document.findall(f"{{{DS_NS}}}Signature"):
        document.remove(old)
    target = document if uri == "" else document.xpath("//*[@Id=$id]", id=uri[1:])[0]
    c14n_transform = next((t for t in reversed(transforms) if t in (EXC_C14N, INCLUSIVE_C14N)), INCLUSIVE_C14N)
    referenced = etree.fromstring(etree.tostring(target)) if uri else target
    digest_value = (hashlib.sha1 if digest == SHA1 else hashlib.sha256)(_c14n(referenced, c14n_transform)).digest()
    signed_info = DS.SignedInfo(
        DS.CanonicalizationMethod(Algorithm=c14n), DS.SignatureMethod(Algorithm=method),
        DS.Reference(DS.Transforms(*[DS.Transform(Algorithm=t) for t in transforms]), DS.DigestMethod(Algorithm=digest),
                     DS.DigestValue(base64.b64encode(digest_value).decode()), URI=uri))
    signature = DS.Signature(signed_info, DS.SignatureValue(),
                             DS.KeyInfo(DS.X509Data(DS.X509Certificate(base64.b64encode(
                                 cert.public_bytes(serialization.Encoding.DER)).decode()))))
    document.append(signature)
    data = _c14n(signature.find(f"{{{DS_NS}}}SignedInfo"), c14n)
    if hmac_key is not None:
        import hmac
        value = hmac.new(hmac_key, data, hashlib.sha256).digest()
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        value = key.sign(data, padding.PKCS1v15(), hashes.SHA1() if method == RSA_SHA1 else hashes.SHA256())
    signature.find(f"{{{DS_NS}}}SignatureValue").text = base64.b64encode(value).decode()
    return document


# -- NARSA's own documents (the REST partner door) -------------------------------------------------

N = ElementMaker(namespace="urn:ma:narsa:authentification-permis:1", nsmap={None: "urn:ma:narsa:authentification-permis:1"})


def narsa_result(signer: Signer | None, *, verdict: str = "NON_AUTHENTIQUE") -> etree._Element:
    document = N.ResultatAuthentification(
        N.IdentifiantMessage("NARSA-R-000001"), N.ReferenceDemande("REGISTRY-LIC-2026-000001"),
        N.ReferenceDossier("LIC-2026-000001"), N.ReferenceNarsa("NARSA-2026-000001"),
        N.DateDecision("2026-11-23T10:16:30Z"), N.Verdict(verdict))
    return signer.sign(document) if signer else document


def post_partner(client, document: etree._Element | bytes, partner: str = "NARSA"):
    data = document if isinstance(document, bytes) else etree.tostring(document, xml_declaration=True, encoding="UTF-8")
    return client.post(f"/api/v1/partners/{partner}/messages", content=data,
                       headers={"Content-Type": "application/xml"})

"""Enveloped XML signatures over a document: RSA-SHA256 (or ECDSA-SHA256), SHA-256 digests, exclusive c14n.

The signature sits inside the document it signs (Reference URI=""), so the same signed bytes can be
carried inside the canonical envelope, a SOAP body, a REST body or an SFTP file unchanged: to
verify, the document is detached into a tree of its own (exclusive c14n makes that neutral).

Verification pins everything in advance, and checks it before any cryptography runs:

- exactly one ds:Signature, a direct child of the signed document;
- SignedInfo: CanonicalizationMethod exclusive c14n (no comments); SignatureMethod rsa-sha256 or
  ecdsa-sha256; exactly one Reference, `URI=""` (the whole document: an `#id` reference is how
  signature wrapping moves a signature onto another element), Transforms exactly enveloped-signature
  then exclusive c14n, DigestMethod SHA-256;
- nothing else in the signature: no ds:Object, no Manifest, no RetrievalMethod (unsigned content or
  network fetches hide there); KeyInfo may carry X509Data, KeyName or KeyValue only;
- the certificate used must be valid now (not before / not after) and allowed to sign (key usage
  digitalSignature or contentCommitment when the extension is present).

Only the element that `verify()` returns is the signed content; use nothing else afterwards
(signature-wrapping attacks live in the rest of the tree).
"""
from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration

from hub.errors import Problem, SignatureInvalid

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = SignatureMethod.RSA_SHA256.value
ECDSA_SHA256 = SignatureMethod.ECDSA_SHA256.value
SIGNATURE_METHODS = {RSA_SHA256: "rsa-sha256", ECDSA_SHA256: "ecdsa-sha256"}

_EXPECTED = SignatureConfiguration(
    location="./",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)
_KEY_INFO_CHILDREN = {"X509Data", "KeyName", "KeyValue"}
_X509_DATA_CHILDREN = {"X509Certificate", "X509IssuerSerial", "X509SubjectName", "X509SKI"}


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def method_for_key(key) -> SignatureMethod:
    """The signature method a private key signs with: RSA → rsa-sha256, EC P-256 → ecdsa-sha256."""
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return SignatureMethod.ECDSA_SHA256
    raise ValueError(f"cannot sign with a {type(key).__name__}: the hub signs with RSA or ECDSA P-256 keys")


class Signer:
    """Signs documents with one party's key (loaded once) and certificate.

    The method follows the key: RSA keys sign rsa-sha256, EC P-256 keys ecdsa-sha256; always SHA-256
    digests, exclusive c14n, enveloped, Reference URI="", the certificate in KeyInfo/X509Data."""

    def __init__(self, key, certificate: x509.Certificate):
        self.key = key
        self.certificate = certificate
        self.method = method_for_key(key)

    @property
    def algorithm(self) -> str:
        return SIGNATURE_METHODS[self.method.value]

    def sign(self, document: etree._Element) -> etree._Element:
        """Return a signed copy of `document` (left unchanged), the signature as its last child."""
        document = copy.deepcopy(document)
        for old in document.findall(_ds("Signature")):
            document.remove(old)
        signer = XMLSigner(
            method=methods.enveloped,
            signature_algorithm=self.method,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signer.namespaces = {"ds": DS_NS}
        return signer.sign(document, key=self.key, cert=[self.certificate])


# -- the expected shape of a signature, checked before any cryptography -----------------------------

@dataclass(frozen=True)
class SignatureParts:
    """What the structural check found: the signature, its method and value, the certificates it carries."""

    signature: etree._Element
    signed_info: etree._Element
    method: str                         # the SignatureMethod URI (one of SIGNATURE_METHODS)
    value: bytes                        # the raw SignatureValue
    certificates: list[x509.Certificate]  # from KeyInfo/X509Data/X509Certificate (not trusted: hints)


def _refuse(signer_name: str, why: str, element: etree._Element | None = None) -> SignatureInvalid:
    path = element.getroottree().getpath(element) if element is not None else None
    line = element.sourceline if element is not None else None
    return SignatureInvalid(f"verifying {signer_name}'s signature: {why}", [Problem(why, line=line, path=path)])


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _only(parent: etree._Element, expected: list[str], signer_name: str, *, optional: tuple = ()) -> list:
    """The element children of `parent`, which must be exactly `expected` (ds local names) in order,
    plus at most one of each `optional` name."""
    children = _elements(parent)
    names = [etree.QName(c).localname if etree.QName(c).namespace == DS_NS else c.tag for c in children]
    required = [n for n in names if n not in optional]
    extra = [n for n in names if n in optional]
    if required != expected or len(extra) != len(set(extra)):
        raise _refuse(signer_name, f"ds:{etree.QName(parent).localname} must hold "
                                   f"{', '.join('ds:' + e for e in expected)}"
                                   + (f" (and optionally {', '.join('ds:' + o for o in optional)})" if optional else "")
                                   + f", found {', '.join(names) or 'nothing'}", parent)
    return [c for c, n in zip(children, names) if n not in optional]


def _algorithm(element: etree._Element, allowed: dict[str, str], what: str, signer_name: str) -> str:
    uri = element.get("Algorithm") or ""
    if uri not in allowed:
        raise _refuse(signer_name, f"unexpected {what} {uri!r}; the hub accepts only "
                                   f"{' or '.join(allowed.values())}", element)
    if _elements(element) or (element.text or "").strip():
        raise _refuse(signer_name, f"ds:{etree.QName(element).localname} must be empty (no parameters)", element)
    return uri


def check_structure(document: etree._Element, signer_name: str) -> SignatureParts:
    """The document's one signature, checked against the configuration the hub expects."""
    signatures = document.findall(_ds("Signature"))
    if not signatures:
        raise SignatureInvalid(f"document is not signed: {signer_name}'s signature is required",
                               [Problem("no ds:Signature element as a child of the signed document",
                                        path=document.getroottree().getpath(document))])
    if len(signatures) > 1:
        raise SignatureInvalid(f"document carries {len(signatures)} signatures; exactly one from {signer_name} "
                               f"is expected", [Problem("more than one ds:Signature",
                                                        path=document.getroottree().getpath(document))])
    signature = signatures[0]
    children = _only(signature, ["SignedInfo", "SignatureValue"], signer_name, optional=("KeyInfo",))
    signed_info, value_element = children[0], children[1]
    c14n, method, reference = _only(signed_info, ["CanonicalizationMethod", "SignatureMethod", "Reference"],
                                    signer_name)
    _algorithm(c14n, {EXC_C14N: "exclusive c14n"}, "canonicalization", signer_name)
    method_uri = _algorithm(method, SIGNATURE_METHODS, "signature method", signer_name)
    if reference.get("URI") != "" or set(reference.attrib) - {"URI", "Id"}:
        raise _refuse(signer_name, f"the signature must cover the whole document (Reference URI=\"\"), "
                                   f"not URI={reference.get('URI')!r}", reference)
    transforms, digest_method, _ = _only(reference, ["Transforms", "DigestMethod", "DigestValue"], signer_name)
    steps = _only(transforms, ["Transform", "Transform"], signer_name)
    if [t.get("Algorithm") for t in steps] != [ENVELOPED, EXC_C14N] or any(_elements(t) for t in steps):
        raise _refuse(signer_name, "transforms must be exactly enveloped-signature then exclusive c14n, found "
                                   + ", ".join(repr(t.get("Algorithm")) for t in steps), transforms)
    _algorithm(digest_method, {SHA256: "sha256"}, "digest", signer_name)
    try:
        value = base64.b64decode("".join((value_element.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(signer_name, "SignatureValue is not base64", value_element) from None
    if not value:
        raise _refuse(signer_name, "SignatureValue is empty", value_element)
    certificates = []
    key_info = signature.find(_ds("KeyInfo"))
    if key_info is not None:
        for child in _elements(key_info):
            if etree.QName(child).namespace != DS_NS or etree.QName(child).localname not in _KEY_INFO_CHILDREN:
                raise _refuse(signer_name, f"ds:KeyInfo may hold X509Data, KeyName or KeyValue only, "
                                           f"not {child.tag}", child)
        for data in key_info.findall(_ds("X509Data")):
            for child in _elements(data):
                if etree.QName(child).namespace != DS_NS or etree.QName(child).localname not in _X509_DATA_CHILDREN:
                    raise _refuse(signer_name, f"unexpected {child.tag} in ds:X509Data", child)
            for element in data.findall(_ds("X509Certificate")):
                try:
                    der = base64.b64decode("".join((element.text or "").split()), validate=True)
                    certificates.append(x509.load_der_x509_certificate(der))
                except (binascii.Error, ValueError):
                    raise _refuse(signer_name, "ds:X509Certificate is not a DER certificate in base64",
                                  element) from None
    return SignatureParts(signature, signed_info, method_uri, value, certificates)


# -- certificates and keys ----------------------------------------------------------------------------

def describe(certificate: x509.Certificate) -> str:
    return f"certificate {certificate.subject.rfc4514_string()} (serial {certificate.serial_number:x})"


def validity_problem(certificate: x509.Certificate, now: dt.datetime | None = None) -> str | None:
    """Why `certificate` is not valid at `now` (not before / not after), or None."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def certificate_problem(certificate: x509.Certificate, now: dt.datetime | None = None) -> str | None:
    """Why `certificate` may not be used to verify a signature now, or None when it may."""
    problem = validity_problem(certificate, now)
    if problem:
        return problem
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None  # RFC 5280: no KeyUsage extension means no restriction
    if not (usage.digital_signature or usage.content_commitment):
        return "is not allowed to sign (key usage lacks digitalSignature and contentCommitment)"
    return None


def signed_info_c14n(parts: SignatureParts) -> bytes:
    # As signxml does it: the signature in a tree of its own, then SignedInfo canonicalised (exclusive).
    signature = etree.fromstring(etree.tostring(parts.signature))
    signed_info = signature.find(_ds("SignedInfo"))
    return etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)


def made_with(parts: SignatureParts, certificate: x509.Certificate, signed_info: bytes | None = None) -> bool:
    """Whether the SignatureValue was made with `certificate`'s key (SignedInfo only: says who signed,
    not whether the content is intact; the full verification does that)."""
    data = signed_info if signed_info is not None else signed_info_c14n(parts)
    key = certificate.public_key()
    try:
        if parts.method == RSA_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(parts.value, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        if parts.method == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(parts.value) != 2 * size:
                return False
            r, s = int.from_bytes(parts.value[:size], "big"), int.from_bytes(parts.value[size:], "big")
            key.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
    except (CryptoInvalidSignature, ValueError):
        return False
    return False


def verify_with(document: etree._Element, certificate: x509.Certificate, *, signer_name: str) -> etree._Element:
    """signxml's verification of `document` against `certificate`, with the hub's expected configuration;
    returns the signed element. The caller has checked the structure and the certificate."""
    detached = copy.deepcopy(document)
    try:
        result = XMLVerifier().verify(detached, x509_cert=certificate, expect_config=_EXPECTED)
    except InvalidDigest:
        raise SignatureInvalid(f"signed content was altered after {signer_name} signed it",
                               [Problem("digest of the signed content does not match the signature")]) from None
    except (InvalidSignature, InvalidCertificate, InvalidInput, SignXMLException, etree.DocumentInvalid,
            etree.XMLSyntaxError, ValueError) as exc:
        raise SignatureInvalid(f"signature does not verify as {signer_name}'s: {exc}",
                               [Problem(str(exc))]) from None
    except Exception as exc:  # noqa: BLE001 - signxml trips over hostile unsigned parts (e.g. KeyValue)
        raise SignatureInvalid(f"signature does not verify as {signer_name}'s: its KeyInfo or structure could not "
                               f"be read ({type(exc).__name__})", [Problem("unreadable signature")]) from None
    if result.signed_xml is None:
        raise SignatureInvalid(f"signed content of {signer_name}'s document is not XML")
    return result.signed_xml


def verify(document: etree._Element, certificate: x509.Certificate, *, signer_name: str) -> etree._Element:
    """Verify `document`'s enveloped signature against the pinned certificate; return the signed element."""
    check_structure(document, signer_name)
    problem = certificate_problem(certificate)
    if problem:
        raise SignatureInvalid(f"the pinned certificate of {signer_name} {problem}",
                               [Problem(f"{describe(certificate)} {problem}")])
    return verify_with(document, certificate, signer_name=signer_name)

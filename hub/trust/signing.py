"""Enveloped XML signatures over a document: RSA-SHA256 (or ECDSA-SHA256), SHA-256 digests, exclusive c14n.

The signature sits inside the document it signs (Reference URI=""), so the same signed bytes can be
carried inside the canonical envelope, a SOAP body, a REST body or an SFTP file unchanged: exclusive
c14n makes the document's place in a larger tree neutral (it renders only the namespaces an element
uses, and imports no xml:* attribute from ancestors), so a document is canonicalised where it stands.

The hub accepts one profile only, and that is why the XML-DSig work here is a few lines of
`cryptography` and lxml's c14n rather than a general XML-DSig library: what a general verifier spends
its time on (copying the tree through text several times, resolving references and transforms, schema
checks of the signature) buys nothing once the structure is pinned. Signing fills a template (SignedInfo
is the same every time but for the digest; its bytes are their own exclusive-c14n form), hub/trust/
streaming.py writes the same signature around streamed files, and xmlsec1 and signxml verify both
(tests/test_signing_equivalence.py holds them to it).

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

Then the SignatureValue over SignedInfo's exclusive c14n, then the digest of the document without its
signature. Only the element that `verify()` returns is the signed content: it is parsed from the very
bytes that were digested, so it holds nothing the signature does not cover (no comments, nothing of the
tree around the document); use nothing else afterwards (signature-wrapping attacks live in the rest of
the tree).
"""
from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree

from hub.errors import Problem, SignatureInvalid
from hub.xml.safe import parse_trusted

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIGNATURE_METHODS = {RSA_SHA256: "rsa-sha256", ECDSA_SHA256: "ecdsa-sha256"}
DSIG11_NS = "http://www.w3.org/2009/xmldsig11#"
_CURVES = {"urn:oid:1.2.840.10045.3.1.7": "secp256r1", "urn:oid:1.3.132.0.34": "secp384r1",
           "urn:oid:1.3.132.0.35": "secp521r1"}

_KEY_INFO_CHILDREN = {"X509Data", "KeyName", "KeyValue"}
_X509_DATA_CHILDREN = {"X509Certificate", "X509IssuerSerial", "X509SubjectName", "X509SKI"}


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def c14n(element: etree._Element) -> bytes:
    """Exclusive c14n (without comments) of `element` and its subtree, where it stands: the same bytes as for a
    detached copy (exclusive c14n renders only the namespaces used and imports no xml:* attribute)."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


# -- signing --------------------------------------------------------------------------------------------

# SignedInfo's children in the profile, in their exclusive-c14n form. SignedInfo as the apex of its c14n
# declares xmlns:ds itself (_APEX); inside ds:Signature it need not, and its c14n is the same.
_SIGNED_INFO_CHILDREN = (
    '<ds:CanonicalizationMethod Algorithm="' + EXC_C14N + '"></ds:CanonicalizationMethod>'
    '<ds:SignatureMethod Algorithm="{method}"></ds:SignatureMethod>'
    '<ds:Reference URI=""><ds:Transforms>'
    '<ds:Transform Algorithm="' + ENVELOPED + '"></ds:Transform>'
    '<ds:Transform Algorithm="' + EXC_C14N + '"></ds:Transform>'
    '</ds:Transforms><ds:DigestMethod Algorithm="' + SHA256 + '"></ds:DigestMethod>'
    '<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>')
_APEX = b'<ds:SignedInfo xmlns:ds="' + DS_NS.encode() + b'">'
_SIGNATURE_OPEN = b'<ds:Signature xmlns:ds="' + DS_NS.encode() + b'"><ds:SignedInfo>'


def method_for_key(key) -> str:
    """The signature method (URI) a private key signs with: RSA → rsa-sha256, EC P-256 → ecdsa-sha256."""
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return ECDSA_SHA256
    raise ValueError(f"cannot sign with a {type(key).__name__}: the hub signs with RSA or ECDSA P-256 keys")


class Signer:
    """Signs documents with one party's key (loaded once) and certificate.

    The method follows the key: RSA keys sign rsa-sha256, EC P-256 keys ecdsa-sha256; always SHA-256
    digests, exclusive c14n, enveloped, Reference URI="", the certificate in KeyInfo/X509Data. Everything
    but the digest and the SignatureValue is prepared once, here."""

    def __init__(self, key, certificate: x509.Certificate):
        self.key = key
        self.certificate = certificate
        self.method = method_for_key(key)
        self._signed_info_children = _SIGNED_INFO_CHILDREN.replace("{method}", self.method)
        der = base64.b64encode(certificate.public_bytes(Encoding.DER))
        self._key_info = (b"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>" + der
                          + b"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>")

    @property
    def algorithm(self) -> str:
        return SIGNATURE_METHODS[self.method]

    def sign_bytes(self, data: bytes) -> bytes:
        """The raw SignatureValue over `data`: PKCS#1 v1.5 for RSA; for ECDSA r || s, each the curve's size,
        as XML-DSig wants (not the DER structure `cryptography` returns)."""
        key = self.key
        if self.method == RSA_SHA256:
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def signature_for(self, digest: bytes) -> bytes:
        """The ds:Signature element (serialised) for a document whose exclusive c14n without its signature has
        SHA-256 `digest`."""
        children = self._signed_info_children.replace("{digest}", base64.b64encode(digest).decode()).encode()
        value = base64.b64encode(self.sign_bytes(_APEX + children + b"</ds:SignedInfo>"))
        return (_SIGNATURE_OPEN + children + b"</ds:SignedInfo><ds:SignatureValue>" + value + b"</ds:SignatureValue>"
                + self._key_info)

    def sign(self, document: etree._Element) -> etree._Element:
        """Return a signed copy of `document` (left unchanged), the signature as its last child."""
        document = copy.deepcopy(document)
        for old in list(document.iterchildren(_ds("Signature"))):
            document.remove(old)
        document.append(parse_trusted(self.signature_for(hashlib.sha256(c14n(document)).digest())))
        return document


# -- the expected shape of a signature, checked before any cryptography -----------------------------

@dataclass(frozen=True)
class SignatureParts:
    """What the structural check found: the signature, its method and value, the certificates it carries."""

    signature: etree._Element
    signed_info: etree._Element
    method: str                         # the SignatureMethod URI (one of SIGNATURE_METHODS)
    value: bytes                        # the raw SignatureValue
    certificates: list[x509.Certificate]  # from KeyInfo/X509Data/X509Certificate (not trusted: hints)
    digest_value: etree._Element        # SignedInfo/Reference/DigestValue


def _refuse(signer_name: str, why: str, element: etree._Element | None = None) -> SignatureInvalid:
    path = element.getroottree().getpath(element) if element is not None else None
    line = element.sourceline if element is not None else None
    return SignatureInvalid(f"verifying {signer_name}'s signature: {why}", [Problem(why, line=line, path=path)])


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


_DS_PREFIX = f"{{{DS_NS}}}"


def _ds_name(element: etree._Element) -> str:
    """The local name of a ds: element; anything else by its full name ("{uri}name", "{}name" in no
    namespace), so that it never passes for a ds: one."""
    tag = element.tag
    if tag.startswith(_DS_PREFIX):
        return tag[len(_DS_PREFIX):]
    return tag if tag.startswith("{") else "{}" + tag


def _only(parent: etree._Element, expected: list[str], signer_name: str, *, optional: tuple = ()) -> list:
    """The element children of `parent`, which must be exactly `expected` (ds local names) in order,
    plus at most one of each `optional` name."""
    children = list(parent)
    if [child.tag for child in children] == [_DS_PREFIX + name for name in expected]:
        return children  # the usual case, decided without a Python call per child
    children = _elements(parent)
    names = [_ds_name(c) for c in children]
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
    signatures = list(document.iterchildren(_ds("Signature")))  # (iterchildren: lxml's C loop, not ElementPath)
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
    c14n_method, method, reference = _only(signed_info, ["CanonicalizationMethod", "SignatureMethod", "Reference"],
                                           signer_name)
    _algorithm(c14n_method, {EXC_C14N: "exclusive c14n"}, "canonicalization", signer_name)
    method_uri = _algorithm(method, SIGNATURE_METHODS, "signature method", signer_name)
    if reference.get("URI") != "" or set(reference.attrib) - {"URI", "Id"}:
        raise _refuse(signer_name, f"the signature must cover the whole document (Reference URI=\"\"), "
                                   f"not URI={reference.get('URI')!r}", reference)
    transforms, digest_method, digest_value = _only(reference, ["Transforms", "DigestMethod", "DigestValue"], signer_name)
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
    key_info = next(signature.iterchildren(_ds("KeyInfo")), None)
    if key_info is not None:
        for child in _elements(key_info):
            if _ds_name(child) not in _KEY_INFO_CHILDREN:
                raise _refuse(signer_name, f"ds:KeyInfo may hold X509Data, KeyName or KeyValue only, "
                                           f"not {child.tag}", child)
        for data in key_info.iterchildren(_ds("X509Data")):
            for child in _elements(data):
                if _ds_name(child) not in _X509_DATA_CHILDREN:
                    raise _refuse(signer_name, f"unexpected {child.tag} in ds:X509Data", child)
            for element in data.iterchildren(_ds("X509Certificate")):
                try:
                    certificates.append(_certificate(element.text or ""))
                except (binascii.Error, ValueError):
                    raise _refuse(signer_name, "ds:X509Certificate is not a DER certificate in base64",
                                  element) from None
    return SignatureParts(signature, signed_info, method_uri, value, certificates, digest_value)


CACHED_CERTIFICATE_CHARS = 8192  # a certificate's base64 is 1-3 KB; larger texts are decoded, never kept


def _certificate(text: str) -> x509.Certificate:
    """A ds:X509Certificate's certificate (base64 DER). The same few certificates arrive with every message:
    decoded once each, by their DER (certificates are immutable; a text that does not decode raises every
    time). Only texts of a certificate's size are kept, so that senders cannot fill the cache with large ones."""
    der = base64.b64decode("".join(text.split()), validate=True)
    if len(text) > CACHED_CERTIFICATE_CHARS:
        return x509.load_der_x509_certificate(der)
    return _certificate_of(der)


@functools.lru_cache(maxsize=256)
def _certificate_of(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


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
    """The bytes the SignatureValue signs: SignedInfo's exclusive c14n (where it stands, which is the same as in
    a tree of its own)."""
    return _c14n_of_signed(parts.signed_info, "ds:SignedInfo")


def _c14n_of_signed(element: etree._Element, what: str) -> bytes:
    """`c14n(element)` of a document being verified: one that cannot be canonicalised (a relative namespace
    URI in scope, which parsing and the schema let through) is a signature that does not verify (400), not
    an error of the hub."""
    try:
        return c14n(element)
    except etree.C14NError as exc:
        raise SignatureInvalid(f"the signed document cannot be canonicalised ({what}): {exc}",
                               [Problem(f"exclusive c14n refused: {exc}")]) from None


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


def _base64(element: etree._Element | None) -> bytes:
    if element is None:
        raise ValueError("missing")
    return base64.b64decode("".join((element.text or "").split()), validate=True)


def _describes(key_value: etree._Element, key) -> bool:
    """Whether a ds:KeyValue (RSAKeyValue, or dsig11:ECKeyValue with a named curve) describes `key`."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            rsa_value = key_value.find(_ds("RSAKeyValue"))
            numbers = key.public_numbers()
            return (int.from_bytes(_base64(rsa_value.find(_ds("Modulus"))), "big") == numbers.n
                    and int.from_bytes(_base64(rsa_value.find(_ds("Exponent"))), "big") == numbers.e)
        if isinstance(key, ec.EllipticCurvePublicKey):
            ec_value = key_value.find(f"{{{DSIG11_NS}}}ECKeyValue")
            curve = ec_value.find(f"{{{DSIG11_NS}}}NamedCurve").get("URI")
            point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            return (_CURVES.get(curve) == key.curve.name
                    and _base64(ec_value.find(f"{{{DSIG11_NS}}}PublicKey")) == point)
    except (AttributeError, ValueError, binascii.Error):  # a part missing, or not base64
        return False
    return False


def key_value_problem(parts: SignatureParts, certificate: x509.Certificate) -> str | None:
    """Why the signature's ds:KeyValue (unsigned, optional) is refused, or None: present, it must describe
    the key of the certificate that made the signature (two keys named for one signature is ambiguous)."""
    key_info = next(parts.signature.iterchildren(_ds("KeyInfo")), None)
    if key_info is None:
        return None
    key = certificate.public_key()
    for key_value in key_info.iterchildren(_ds("KeyValue")):
        if not _describes(key_value, key):
            return "its ds:KeyValue does not describe the key of the certificate that made the signature"
    return None


def _without_signature(document: etree._Element, signature: etree._Element) -> etree._Element:
    """A copy of `document` without `signature` (one of its children), as the enveloped-signature transform
    leaves it: the signature's tail (text after it) stays where it was."""
    copied = copy.deepcopy(document)
    index = document.index(signature)
    removed = copied[index]
    if removed.tail:
        previous = removed.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + removed.tail
        else:
            copied.text = (copied.text or "") + removed.tail
    copied.remove(removed)
    return copied


def signed_content(document: etree._Element, parts: SignatureParts, certificate: x509.Certificate, *,
                   signer_name: str) -> etree._Element:
    """The content `parts`' signature covers, once its Reference digest matches `document`: the document
    without its signature, parsed back from its exclusive c14n (the bytes digested), so nothing unsigned
    (comments, the tree around it) reaches the caller. The caller has checked the structure and that the
    SignatureValue was made with `certificate`, a certificate it trusts (`made_with`)."""
    problem = key_value_problem(parts, certificate)
    if problem:
        raise SignatureInvalid(f"signature does not verify as {signer_name}'s: {problem}", [Problem(problem)])
    digest_value = parts.digest_value
    if len(digest_value):  # element children or comments: not the plain base64 the profile has
        raise _refuse(signer_name, "DigestValue must hold base64 text only", digest_value)
    try:
        expected = base64.b64decode("".join((digest_value.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(signer_name, "DigestValue is not base64", digest_value) from None
    content = _c14n_of_signed(_without_signature(document, parts.signature), "the signed content")
    if not hmac.compare_digest(hashlib.sha256(content).digest(), expected):
        raise SignatureInvalid(f"signed content was altered after {signer_name} signed it",
                               [Problem("digest of the signed content does not match the signature")])
    return parse_trusted(content)  # hardened (no DTD, entities or network), as everything the hub parses


def verify_with(document: etree._Element, certificate: x509.Certificate, *, signer_name: str,
                parts: SignatureParts | None = None) -> etree._Element:
    """Verify `document`'s signature against `certificate`: the SignatureValue over SignedInfo, then the
    digest of the content; returns the signed content (`signed_content`). The caller has checked the
    certificate (and the structure, when it gives `parts`)."""
    parts = parts if parts is not None else check_structure(document, signer_name)
    if not made_with(parts, certificate):
        raise SignatureInvalid(f"signature does not verify as {signer_name}'s: its SignatureValue was not made "
                               f"with the {describe(certificate)}",
                               [Problem("SignatureValue does not verify over SignedInfo")])
    return signed_content(document, parts, certificate, signer_name=signer_name)


def verify(document: etree._Element, certificate: x509.Certificate, *, signer_name: str) -> etree._Element:
    """Verify `document`'s enveloped signature against the pinned certificate; return the signed element."""
    parts = check_structure(document, signer_name)
    problem = certificate_problem(certificate)
    if problem:
        raise SignatureInvalid(f"the pinned certificate of {signer_name} {problem}",
                               [Problem(f"{describe(certificate)} {problem}")])
    return verify_with(document, certificate, signer_name=signer_name, parts=parts)

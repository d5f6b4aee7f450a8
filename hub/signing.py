"""Enveloped XML signatures over a document: RSA-SHA256, SHA-256 digests, exclusive c14n.

The signature sits inside the document it signs (Reference URI=""), so the same signed bytes can be
carried inside the canonical envelope, a SOAP body, a REST body or an SFTP file unchanged: to
verify, the document is detached into a tree of its own (exclusive c14n makes that neutral).

Verification pins everything in advance: the signer's certificate, one reference, the algorithms,
and the signature's place (a direct child of the document). Only the element that `verify()`
returns as signed is used afterwards (signature-wrapping attacks live in the rest of the tree).
"""
from __future__ import annotations

import copy
import datetime as dt

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration

from hub.errors import Problem, SignatureInvalid

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_EXPECTED = SignatureConfiguration(
    location="./",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)


class Signer:
    """Signs documents with one party's key (loaded once) and certificate."""

    def __init__(self, key, certificate: x509.Certificate):
        self.key = key
        self.certificate = certificate

    def sign(self, document: etree._Element) -> etree._Element:
        """Return a signed copy of `document` (left unchanged), the signature as its last child."""
        document = copy.deepcopy(document)
        for old in document.findall(f"{{{DS_NS}}}Signature"):
            document.remove(old)
        signer = XMLSigner(
            method=methods.enveloped,
            signature_algorithm=SignatureMethod.RSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signer.namespaces = {"ds": DS_NS}
        return signer.sign(document, key=self.key, cert=[self.certificate])


def verify(document: etree._Element, certificate: x509.Certificate, *, signer_name: str) -> etree._Element:
    """Verify `document`'s enveloped signature against the pinned certificate; return the signed element."""
    now = dt.datetime.now(dt.timezone.utc)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SignatureInvalid(f"the pinned certificate of {signer_name} is not valid now",
                               [Problem(f"certificate valid {certificate.not_valid_before_utc:%Y-%m-%d} "
                                        f"to {certificate.not_valid_after_utc:%Y-%m-%d}")])
    signatures = document.findall(f"{{{DS_NS}}}Signature")
    if len(signatures) > 1:
        raise SignatureInvalid(f"document carries {len(signatures)} signatures; exactly one from {signer_name} is expected",
                               [Problem("more than one ds:Signature", path=document.getroottree().getpath(document))])
    if not signatures:
        raise SignatureInvalid(f"document is not signed: {signer_name}'s signature is required",
                               [Problem("no ds:Signature element as a child of the signed document",
                                        path=document.getroottree().getpath(document))])
    detached = copy.deepcopy(document)
    try:
        result = XMLVerifier().verify(detached, x509_cert=certificate, expect_config=_EXPECTED)
    except InvalidDigest:
        raise SignatureInvalid(f"signed content was altered after {signer_name} signed it",
                               [Problem("digest of the signed content does not match the signature")]) from None
    except (InvalidSignature, InvalidCertificate, InvalidInput, etree.DocumentInvalid, ValueError) as exc:
        raise SignatureInvalid(f"signature does not verify as {signer_name}'s: {exc}",
                               [Problem(str(exc))]) from None
    return result.signed_xml

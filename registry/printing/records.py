"""The registry's signed record of an issued document: what makes its verification answer trustworthy.

When a document is issued, the registry signs (its own key, the one it signs its messages with: hub/trust/) an
IssuedDocument that binds the verification code's digest to what the public verification shows of the document,
and to the SHA-256 of the PDF handed over:

    <doc:IssuedDocument xmlns:doc="urn:ma:gov:consular:documents:1">
      <doc:CodeDigest>…</doc:CodeDigest>  <doc:Kind>REGISTRATION_CERTIFICATE</doc:Kind>
      <doc:Reference>MRE-0000012</doc:Reference>  <doc:Holder>Y. El Amrani</doc:Holder>
      <doc:Post>FR-PARIS</doc:Post>  <doc:IssuedAt>2026-12-03T14:00:00+00:00</doc:IssuedAt>
      <doc:Language>fr</doc:Language>  <doc:PdfDigest>…</doc:PdfDigest>
      <ds:Signature>…</ds:Signature>
    </doc:IssuedDocument>

Verification reads nothing but what the signature covers: a row whose columns or record were changed in the
database no longer verifies, and the answer says the document is not genuine. The record holds no more personal
data than the verification shows (the holder as an initial and family name), never the printed details.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree
from lxml.builder import ElementMaker

from hub.errors import SignatureInvalid
from hub.trust.signing import Signer, verify
from hub.xml.safe import parse_trusted, to_bytes

NS = "urn:ma:gov:consular:documents:1"
D = ElementMaker(namespace=NS, nsmap={"doc": NS})
SIGNER_NAME = "REGISTRY"


@dataclass(frozen=True)
class Record:
    """What the signed record says of a document."""

    code_digest: str
    kind: str
    reference: str
    holder: str
    post_code: str | None
    issued_at: dt.datetime
    language: str
    pdf_digest: str


def sign(record: Record, signer: Signer) -> bytes:
    """The signed IssuedDocument for `record`."""
    document = D.IssuedDocument(D.CodeDigest(record.code_digest), D.Kind(record.kind), D.Reference(record.reference),
                                D.Holder(record.holder), *([D.Post(record.post_code)] if record.post_code else []),
                                D.IssuedAt(record.issued_at.isoformat(timespec="seconds")),
                                D.Language(record.language), D.PdfDigest(record.pdf_digest))
    return to_bytes(signer.sign(document))


def read_verified(data: bytes, certificate) -> Record:
    """The record signed in `data`, once its signature verifies against the registry's `certificate`;
    SignatureInvalid otherwise (altered, signed by another key, not a record)."""
    try:
        signed = verify(parse_trusted(data), certificate, signer_name=SIGNER_NAME)
    except SignatureInvalid:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable bytes are as bad as a broken signature
        raise SignatureInvalid(f"the record of the document cannot be read ({type(exc).__name__})") from None
    if etree.QName(signed).namespace != NS or etree.QName(signed).localname != "IssuedDocument":
        raise SignatureInvalid("the signed content is not a record of an issued document")
    field = lambda name: (signed.findtext(f"{{{NS}}}{name}") or "")  # noqa: E731
    try:
        issued_at = dt.datetime.fromisoformat(field("IssuedAt"))
    except ValueError:
        raise SignatureInvalid("the record of the document has no readable issue time") from None
    return Record(code_digest=field("CodeDigest"), kind=field("Kind"), reference=field("Reference"),
                  holder=field("Holder"), post_code=field("Post") or None, issued_at=issued_at,
                  language=field("Language"), pdf_digest=field("PdfDigest"))

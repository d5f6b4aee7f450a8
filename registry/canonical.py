"""Canonical messages as the registry writes and reads them.

Writing: `envelope(...)` puts a business document in the canonical envelope with its header and
signs the document with the registry's key. Reading: `read(registry, envelope)` verifies the hub's
signature on a delivered business document and returns the header with the element that signature
covers (only that element may be used: signature wrapping lives in the rest of the tree).
"""
from __future__ import annotations

import datetime as dt

from lxml import etree
from lxml.builder import ElementMaker

from hub.store.db import utcnow
from hub.xml.envelope import Header, business_document, read_header
from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import Signer, verify
from hub.xml.safe import to_bytes

PARTY = "REGISTRY"
ENV = ElementMaker(namespace=ENVELOPE_NS, nsmap={"env": ENVELOPE_NS})


def maker(namespace: str, prefix: str) -> ElementMaker:
    """An lxml ElementMaker for a business namespace: `E = maker(NS, "lic"); E.Holder(E.Cnie("J1"))`."""
    return ElementMaker(namespace=namespace, nsmap={prefix: namespace})


def envelope(*, message_id: str, correlation_id: str, document: etree._Element, recipient: str, signer: Signer,
             in_reply_to: str | None = None, created: dt.datetime | None = None) -> bytes:
    """The signed canonical envelope carrying `document`; the header's Type is the document's local name."""
    header = [ENV.MessageId(message_id), ENV.CorrelationId(correlation_id)]
    if in_reply_to:
        header.append(ENV.InReplyTo(in_reply_to))
    header += [ENV.Type(etree.QName(document).localname), ENV.Sender(PARTY), ENV.Recipient(recipient),
               ENV.Created((created or utcnow()).isoformat(timespec="seconds"))]
    return to_bytes(ENV.Message(ENV.Header(*header), ENV.Body(signer.sign(document))))


def read(registry, envelope_element: etree._Element) -> tuple[Header, etree._Element]:
    """The header, and the business document as covered by the hub's verified signature."""
    header = read_header(envelope_element)
    document = verify(business_document(envelope_element), registry.hub.signer.certificate, signer_name="hub")
    return header, document


def text(element: etree._Element, path: str, namespace: str) -> str | None:
    """Text at a path of local names ("Holder/Cnie") in one namespace, stripped; None when absent."""
    found = element.findtext("/".join(f"{{{namespace}}}{part}" for part in path.split("/")))
    return found.strip() if found is not None else None


def verify_partner_artefact(registry, element: etree._Element, partner: str) -> etree._Element:
    """A partner's own signed artefact (attestation, extract, certificate) carried inside a document."""
    return registry.hub.trust.verify(element, partner)

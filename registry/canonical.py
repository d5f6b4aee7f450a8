"""Canonical messages as the registry writes and reads them.

Writing: `envelope(...)` puts a business document in the canonical envelope with its header, binds
the header into the document (hub/xml/envelope.py: env:Binding, so the signature covers it) and signs
the document with the registry's key.

Reading: `read(registry, envelope)` verifies the signature on a delivered business document, the
hub's (a document the hub mapped in from a partner's format and signed on delivery) or the sender's
own (a partner that answered in the canonical form), checks the header against the signed Binding
and case reference, and returns the header with the element that signature covers (only that
element may be used: signature wrapping lives in the rest of the tree). A document that fails any of
this is an InputError: the delivery is refused for good (connectors/local.py), never retried.
"""
from __future__ import annotations

import datetime as dt

from lxml import etree
from lxml.builder import ElementMaker

from hub.store.db import utcnow
from hub.xml.envelope import Header, bind, business_document, check_binding, check_case, read_header
from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import Signer, check_structure, made_with, verify
from hub.xml.safe import to_bytes

PARTY = "REGISTRY"
ENV = ElementMaker(namespace=ENVELOPE_NS, nsmap={"env": ENVELOPE_NS})


def maker(namespace: str, prefix: str) -> ElementMaker:
    """An lxml ElementMaker for a business namespace: `E = maker(NS, "lic"); E.Holder(E.Cnie("J1"))`."""
    return ElementMaker(namespace=namespace, nsmap={prefix: namespace})


def envelope(*, message_id: str, correlation_id: str, document: etree._Element, recipient: str, signer: Signer,
             in_reply_to: str | None = None, created: dt.datetime | None = None) -> bytes:
    """The signed canonical envelope carrying `document`; the header's Type is the document's local name,
    and the header is bound into the document (env:Binding) before it is signed."""
    header = Header(message_id, correlation_id, in_reply_to or None, etree.QName(document).localname, PARTY,
                    recipient, (created or utcnow()).isoformat(timespec="seconds"))
    fields = [ENV.MessageId(message_id), ENV.CorrelationId(correlation_id)]
    if header.in_reply_to:
        fields.append(ENV.InReplyTo(header.in_reply_to))
    fields += [ENV.Type(header.type), ENV.Sender(PARTY), ENV.Recipient(recipient), ENV.Created(header.created)]
    return to_bytes(ENV.Message(ENV.Header(*fields), ENV.Body(signer.sign(bind(document, header)))))


def read(registry, envelope_element: etree._Element) -> tuple[Header, etree._Element]:
    """The header, and the business document as covered by its verified signature: the hub's, or else its
    sender's (a partner that answered in the canonical form); the header must be the signed Binding."""
    header = read_header(envelope_element)
    document = business_document(envelope_element)
    hub_certificate = registry.hub.signer.certificate
    if made_with(check_structure(document, "hub"), hub_certificate):
        signed = verify(document, hub_certificate, signer_name="hub")
    else:
        signed = registry.hub.trust.verify(document, header.sender)
    check_binding(header, signed)
    check_case(header, signed)
    return header, signed


def text(element: etree._Element, path: str, namespace: str) -> str | None:
    """Text at a path of local names ("Holder/Cnie") in one namespace, stripped; None when absent."""
    found = element.findtext("/".join(f"{{{namespace}}}{part}" for part in path.split("/")))
    return found.strip() if found is not None else None


def verify_partner_artefact(registry, element: etree._Element, partner: str) -> etree._Element:
    """A partner's own signed artefact (attestation, extract, certificate) carried inside a document."""
    return registry.hub.trust.verify(element, partner)

"""The canonical envelope as data: its header fields, its business document, and the header's signed Binding
(schemas/canonical/envelope.xsd).

The envelope's Header is not signed; the business document is (an enveloped signature, Reference URI="").
So that the signature covers the header fields the hub acts on, the signer copies them into the document
before signing, as its last child before ds:Signature:

    <lic:LicenceAuthenticationResult>
      ...
      <env:Binding xmlns:env="urn:ma:gov:consular:hub:envelope:1">
        <env:MessageId>NARSA-R-000001</env:MessageId>
        <env:CorrelationId>LIC-2026-000001</env:CorrelationId>
        <env:InReplyTo>REGISTRY-LIC-2026-000001</env:InReplyTo>   (only when the header has one)
        <env:Type>LicenceAuthenticationResult</env:Type>
        <env:Sender>NARSA</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
      </env:Binding>
      <ds:Signature>...</ds:Signature>
    </lic:LicenceAuthenticationResult>

`bind` adds it (before signing), `check_binding` compares the header with the Binding of the *verified*
document, and `check_case` the header's CorrelationId with the document's own case reference.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from lxml import etree

from hub.errors import HeaderMismatch, Problem
from hub.xml.schemas import ENVELOPE_NS

_E = f"{{{ENVELOPE_NS}}}"
_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"

# header element -> Header attribute, in the schema's order: what the signature covers (Created is not bound)
BOUND_FIELDS = {"MessageId": "message_id", "CorrelationId": "correlation_id", "InReplyTo": "in_reply_to",
                "Type": "type", "Sender": "sender", "Recipient": "recipient"}
# a business document's own reference to its exchange, first found wins (its first child in every schema)
CASE_FIELDS = ("JusticeReference", "BatchReference", "CaseReference")


@dataclass(frozen=True)
class Header:
    message_id: str
    correlation_id: str
    in_reply_to: str | None
    type: str
    sender: str
    recipient: str
    created: str


def _text(parent: etree._Element, tag: str) -> str | None:
    return (parent.findtext(f"{_E}{tag}") or "").strip() or None


def read_header(envelope: etree._Element) -> Header:
    h = envelope.find(f"{_E}Header")
    return Header(*(_text(h, tag) for tag in ("MessageId", "CorrelationId", "InReplyTo", "Type", "Sender",
                                              "Recipient", "Created")))


def business_document(envelope: etree._Element) -> etree._Element:
    return envelope.find(f"{_E}Body")[0]


def bind(document: etree._Element, header: Header) -> etree._Element:
    """A copy of `document` with `header`'s Binding as its last child (before a ds:Signature, which the
    signer then replaces); an old Binding is dropped."""
    document = copy.deepcopy(document)
    for old in document.findall(f"{_E}Binding"):
        document.remove(old)
    binding = etree.Element(f"{_E}Binding", nsmap={"env": ENVELOPE_NS})
    for tag, attribute in BOUND_FIELDS.items():
        value = getattr(header, attribute)
        if value is not None:
            etree.SubElement(binding, f"{_E}{tag}").text = value
    signature = document.find(_SIGNATURE)
    if signature is not None:
        signature.addprevious(binding)
    else:
        document.append(binding)
    return document


def check_binding(header: Header, signed: etree._Element) -> None:
    """HeaderMismatch unless every bound header field is what the signed document's Binding says.

    `signed` must be the element a verified signature covers (hub.trust), never the tree as received."""
    binding = signed.find(f"{_E}Binding")
    name = etree.QName(signed).localname
    if binding is None:
        raise HeaderMismatch(f"the signed {name} carries no env:Binding: its header ("
                             f"{', '.join(BOUND_FIELDS)}) is not covered by {header.sender}'s signature",
                             [Problem("no env:Binding in the signed document", path=f"/Message/Body/{name}")])
    problems = []
    for tag, attribute in BOUND_FIELDS.items():
        stated, signed_value = getattr(header, attribute), _text(binding, tag)
        if stated != signed_value:
            problems.append(Problem(f"{tag} is {_show(stated)} in the header but {_show(signed_value)} in the "
                                    f"signed Binding", path=f"/Message/Header/{tag}"))
    if problems:
        raise HeaderMismatch(f"header does not match the signed document's Binding: {problems[0].message}",
                             problems)


def case_reference(document: etree._Element) -> str | None:
    """The document's own reference to its exchange (JusticeReference, BatchReference or CaseReference, a
    direct child), or None when it has none."""
    for tag in CASE_FIELDS:
        for child in document:
            if isinstance(child.tag, str) and etree.QName(child).localname == tag:
                return (child.text or "").strip() or None
    return None


def check_case(header: Header, document: etree._Element) -> None:
    """HeaderMismatch when the header's CorrelationId is not the (signed) document's own case reference."""
    reference = case_reference(document)
    if reference is not None and reference != header.correlation_id:
        raise HeaderMismatch(f"header CorrelationId {_show(header.correlation_id)} is not the case the signed "
                             f"document names ({reference!r})",
                             [Problem(f"CorrelationId is {_show(header.correlation_id)} in the header but the "
                                      f"document's case reference is {reference!r}",
                                      path="/Message/Header/CorrelationId")])


def _show(value: str | None) -> str:
    return "absent" if value is None else repr(value)

"""The canonical envelope as data: its header fields and its business document (schemas/canonical)."""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from hub.xml.schemas import ENVELOPE_NS

_E = f"{{{ENVELOPE_NS}}}"


@dataclass(frozen=True)
class Header:
    message_id: str
    correlation_id: str
    in_reply_to: str | None
    type: str
    sender: str
    recipient: str
    created: str


def read_header(envelope: etree._Element) -> Header:
    h = envelope.find(f"{_E}Header")
    text = lambda tag: (h.findtext(f"{_E}{tag}") or "").strip() or None  # noqa: E731
    return Header(text("MessageId"), text("CorrelationId"), text("InReplyTo"), text("Type"), text("Sender"),
                  text("Recipient"), text("Created"))


def business_document(envelope: etree._Element) -> etree._Element:
    return envelope.find(f"{_E}Body")[0]

"""Signed receipts: the hub's proof that it accepted a message (law 55-19 asks for one)."""
from __future__ import annotations

import datetime as dt

from lxml import etree

from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import Signer
from hub.xml.safe import to_bytes


def build_receipt(signer: Signer, *, message_id: str, sender: str, digest: str, received_at: dt.datetime) -> bytes:
    e = lambda tag: f"{{{ENVELOPE_NS}}}{tag}"  # noqa: E731
    root = etree.Element(e("Receipt"), nsmap={"env": ENVELOPE_NS})
    etree.SubElement(root, e("MessageId")).text = message_id
    etree.SubElement(root, e("Sender")).text = sender
    digest_el = etree.SubElement(root, e("Digest"), algorithm="sha256")
    digest_el.text = digest
    etree.SubElement(root, e("ReceivedAt")).text = received_at.isoformat(timespec="milliseconds")
    return to_bytes(signer.sign(root))

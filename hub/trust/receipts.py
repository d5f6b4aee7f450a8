"""Signed receipts: the hub's proof that it accepted a message (law 55-19 asks for one).

One is signed for every message accepted, so it is written as bytes rather than built as a tree: the
receipt without its signature is written in its exclusive-c14n form (one prefix declared on the root, no
empty-element tags, text escaped as c14n escapes it), which makes those bytes their own canonical form
and their SHA-256 the reference digest; the signature goes before the root's end tag. It is the
signature `Signer.sign` puts on the same receipt built as a tree (RSA PKCS#1 v1.5 signatures are
deterministic: tests/test_signing_equivalence.py compares their values)."""
from __future__ import annotations

import datetime as dt
import hashlib

from hub.trust.signing import Signer
from hub.trust.streaming import escape_text
from hub.xml.schemas import ENVELOPE_NS

_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"
_OPEN = f'<env:Receipt xmlns:env="{ENVELOPE_NS}">'
_CLOSE = b"</env:Receipt>"


def build_receipt(signer: Signer, *, message_id: str, sender: str, digest: str, received_at: dt.datetime) -> bytes:
    canonical = (f"{_OPEN}<env:MessageId>{escape_text(message_id)}</env:MessageId>"
                 f"<env:Sender>{escape_text(sender)}</env:Sender>"
                 f'<env:Digest algorithm="sha256">{escape_text(digest)}</env:Digest>'
                 f"<env:ReceivedAt>{received_at.isoformat(timespec='milliseconds')}</env:ReceivedAt>").encode()
    signature = signer.signature_for(hashlib.sha256(canonical + _CLOSE).digest())
    return _DECLARATION + canonical + signature + _CLOSE

"""Inputs the hub refused at its doors, recorded without their bytes: when, through which door, from
whom (as claimed), the status answered, why, and the size and SHA-256 of what arrived.

Written by the door only (hub/intake/door.py: `take_in` for what intake refuses, `refused` for what a
door refuses before intake), once per refusal; `channel` is the door's name. `partner` is the door's
party (partner URL, SOAP endpoint, SFTP partner) or the caller's; when neither is known, the canonical
header's Sender as the bytes claim it. `reason` is the refusal's detail without the values it quotes (an XSD
error repeats the refused value, which may be a name and a birth date typed into a CNIE field: hub/xml/text.py).
"""
from __future__ import annotations

import hashlib
import logging
import re

from hub.store.db import utcnow
from hub.errors import InputError
from hub.store.models import Refusal
from hub.xml.text import for_the_record

log = logging.getLogger("hub.intake.refusals")
REASON_LIMIT = 2000
_SENDER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Sender>\s*([A-Z][A-Z_]{1,19})\s*</")


def claimed_sender(data: bytes | None) -> str | None:
    """The canonical header's Sender as the bytes claim it (never trusted; for the record only): a bounded
    look at the head of the bytes, no parsing."""
    found = _SENDER.search(data[:8192]) if data else None
    return found.group(1).decode() if found else None


def record_refusal(hub, *, channel: str, partner: str | None, error: InputError, data: bytes | None,
                   size: int | None = None) -> None:
    """Best effort: a refusal that cannot be recorded (database down) is logged, never raised.

    `data` None: the bytes were not read (refused on their announced size or media type); `size` is
    then what was announced, if anything, and the digest is left empty."""
    partner = partner or claimed_sender(data)
    digest = hashlib.sha256(data).hexdigest() if data is not None else ""
    size = len(data) if data is not None else (size if size is not None else -1)
    reason = for_the_record(error.detail, REASON_LIMIT)
    try:
        with hub.sessions.begin() as session:
            session.add(Refusal(at=utcnow(), channel=channel, partner=(partner or None) and partner[:20],
                                status=error.status, reason=reason, size=size, digest=digest))
    except Exception:  # noqa: BLE001 - the refusal itself is what the caller answers
        log.warning("could not record a refusal (%s via %s): %s", partner, channel, reason, exc_info=True)
    else:
        log.info("refused %s input from %s: %d %s", channel, partner or "unknown", error.status, error.title)

"""Inputs the hub refused at its doors, recorded without their bytes: when, through which door, from
whom (as claimed), the status answered, why, and the size and SHA-256 of what arrived."""
from __future__ import annotations

import hashlib
import logging

from hub.db import utcnow
from hub.errors import InputError
from hub.models import Refusal

log = logging.getLogger("hub.refusals")


def record_refusal(hub, *, channel: str, partner: str | None, error: InputError, data: bytes) -> None:
    """Best effort: a refusal that cannot be recorded (database down) is logged, never raised."""
    try:
        with hub.sessions.begin() as session:
            session.add(Refusal(at=utcnow(), channel=channel, partner=partner, status=error.status,
                                reason=error.detail[:2000], size=len(data), digest=hashlib.sha256(data).hexdigest()))
    except Exception:  # noqa: BLE001 - the refusal itself is what the caller answers
        log.warning("could not record a refusal (%s via %s): %s", partner, channel, error.detail, exc_info=True)

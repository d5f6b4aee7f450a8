"""The audit log of human actions (resend, cancel, token changes, configuration changes, payload views).

Each entry is written in the same transaction as the action it records, and later sealed into its
hash chain like the message timeline (hub/evidence.py)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.models import AuditEntry


def record(session: Session, *, actor: str, action: str, subject: str = "", detail: str = "") -> AuditEntry:
    entry = AuditEntry(at=utcnow(), actor=actor, action=action, subject=subject, detail=detail)
    session.add(entry)
    return entry

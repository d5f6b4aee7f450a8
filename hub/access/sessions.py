"""Console sessions: what the cookie of a signed-in person stands for.

The cookie is `<session id>.<secret>`; the table keeps the id, the SHA-256 of the secret and the session's
CSRF token, which every form and action of the session must echo. A session ends when its person signs out,
after IDLE_MINUTES without a request, after ABSOLUTE_HOURS in any case, or when the account is disabled or
its password reset. Sessions are read on every request, so an ended one is refused at once."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.access.accounts import account_status, identity_of
from hub.access.tokens import Identity
from hub.store.db import utcnow
from hub.store.models import ConsoleSession, User

IDLE_MINUTES = 30
ABSOLUTE_HOURS = 12
TOUCH_RESOLUTION = dt.timedelta(minutes=1)   # the idle expiry is pushed at most once a minute
_COOKIE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_\-]{30,100})$")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Signed:
    """A session being used: who, and the CSRF token its forms carry."""

    session_id: str
    identity: Identity
    csrf: str


def open_session(session: Session, user: User) -> tuple[str, str]:
    """A new session for `user`: (the cookie value, its CSRF token)."""
    session_id, secret, csrf = secrets.token_hex(16), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    session.add(ConsoleSession(session_id=session_id, secret_hash=_hash(secret), user_id=user.id, csrf_token=csrf,
                               created_at=now, expires_at=now + dt.timedelta(minutes=IDLE_MINUTES),
                               absolute_expires_at=now + dt.timedelta(hours=ABSOLUTE_HOURS)))
    session.flush()
    return f"{session_id}.{secret}", csrf


def resume(hub, cookie: str | None) -> Signed | None:
    """The live session a cookie stands for, or None (no cookie, forged, ended, expired, account not active).
    A read; it writes only to push the idle expiry, at most once a minute."""
    match = _COOKIE.fullmatch(cookie or "")
    if not match:
        return None
    with hub.reads() as session:
        row = session.execute(select(ConsoleSession, User).join(User, User.id == ConsoleSession.user_id)
                              .where(ConsoleSession.session_id == match.group(1))).first()
        if row is None:
            return None
        console_session, user = row
        now = utcnow()
        if (not hmac.compare_digest(console_session.secret_hash, _hash(match.group(2)))
                or console_session.ended_at is not None or console_session.expires_at <= now
                or console_session.absolute_expires_at <= now or account_status(user, now) == "disabled"):
            return None
        signed = Signed(console_session.session_id, identity_of(user), console_session.csrf_token)
        idle_until = min(now + dt.timedelta(minutes=IDLE_MINUTES), console_session.absolute_expires_at)
        touch = idle_until - console_session.expires_at >= TOUCH_RESOLUTION
    if touch:
        with hub.sessions.begin() as session:
            session.execute(update(ConsoleSession).where(ConsoleSession.session_id == signed.session_id)
                            .values(expires_at=idle_until))
    return signed


def end_session(session: Session, session_id: str) -> None:
    session.execute(update(ConsoleSession).where(ConsoleSession.session_id == session_id,
                                                 ConsoleSession.ended_at.is_(None)).values(ended_at=utcnow()))

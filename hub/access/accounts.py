"""People who sign in to the console: accounts with the same roles and post binding as API tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults: memory-hard, salted, tuned by its authors) and
re-hashed at sign-in when those defaults change. A sign-in that fails `LOCK_AFTER` times in a row locks the
account for `LOCK_MINUTES`; while locked, even the right password is refused with the same words as a
wrong one, so a guesser learns nothing. Disabling an account ends its sessions at once.

    create_user(session, username=..., name=..., role=..., password=..., post_code=None, created_by=...)
    check_password(session, username, password) -> SignIn    (never raises for a bad password)
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.access.tokens import CONSULAR_AGENT, HUMAN_ROLES, Identity
from hub.errors import AccountRequestInvalid
from hub.store.db import utcnow
from hub.store.models import ConsoleSession, User

LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # hashing a megabyte is work an attacker could make us do
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,39}$")
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("a password nobody has")  # unknown users cost the same time as known ones


def check_new_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountRequestInvalid(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountRequestInvalid(f"a password has at most {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise AccountRequestInvalid("a password may not contain a NUL character")


def create_user(session: Session, *, username: str, name: str, role: str, password: str, created_by: str,
                post_code: str | None = None, known_posts: set[str] | None = None) -> User:
    username = (username or "").strip().lower()
    if not USERNAME.fullmatch(username):
        raise AccountRequestInvalid("a username is 2 to 40 characters: a lower-case letter, then letters, digits, "
                                    "'.', '_' or '-'")
    name = (name or "").strip()
    if not name or len(name) > 120 or "\x00" in name:
        raise AccountRequestInvalid("an account needs a name of 1 to 120 characters (the person's full name)")
    if role not in HUMAN_ROLES:
        raise AccountRequestInvalid(f"unknown role {role!r} for a person; roles: {', '.join(HUMAN_ROLES)}")
    if role == CONSULAR_AGENT:
        if not post_code:
            raise AccountRequestInvalid("a consular_agent is bound to one post: give --post CODE")
        if known_posts is not None and post_code not in known_posts:
            raise AccountRequestInvalid(f"no consular post with code {post_code!r} is open "
                                        "(config/reference/posts.csv, or one an administrator created)")
    elif post_code:
        raise AccountRequestInvalid(f"only a consular_agent is bound to a post, not a {role}")
    check_new_password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountRequestInvalid(f"the username {username!r} is taken")
    user = User(username=username, name=name, role=role, post_code=post_code, password_hash=_hasher.hash(password),
                created_at=utcnow(), created_by=created_by[:120], failed_logins=0)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == (username or "").strip().lower())).first()
    if user is None:
        raise AccountRequestInvalid(f"no account {username!r} (hub users list shows them)")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def disable_user(session: Session, username: str) -> User:
    """Disable an account and end its sessions (idempotent)."""
    user = find_user(session, username)
    now = utcnow()
    if user.disabled_at is None:
        user.disabled_at = now
    session.execute(update(ConsoleSession).where(ConsoleSession.user_id == user.id, ConsoleSession.ended_at.is_(None))
                    .values(ended_at=now))
    return user


def reset_password(session: Session, username: str, password: str) -> User:
    """A new password; unlocks the account and ends its sessions (whoever held them must sign in again)."""
    user = find_user(session, username)
    check_new_password(password)
    user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until = 0, None
    session.execute(update(ConsoleSession).where(ConsoleSession.user_id == user.id, ConsoleSession.ended_at.is_(None))
                    .values(ended_at=utcnow()))
    return user


def account_status(user: User, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if user.disabled_at is not None:
        return "disabled"
    if user.locked_until is not None and user.locked_until > now:
        return "locked"
    return "active"


def identity_of(user: User) -> Identity:
    return Identity(token_id=f"user-{user.id}", name=user.name, role=user.role, post_code=user.post_code,
                    user=user.username)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a password check: `user` when it succeeded; `reason` (for the audit log, never shown to
    the person: they see one message for every failure) when it did not."""

    user: User | None
    reason: str = ""
    locked_now: bool = False


def check_password(session: Session, username: str, password: str) -> SignIn:
    """Check a sign-in in the caller's transaction: counts failures, locks after LOCK_AFTER, resets on success."""
    username = (username or "").strip().lower()[:40]
    user = session.scalars(select(User).where(User.username == username).with_for_update()).first() \
        if USERNAME.fullmatch(username) else None
    if user is None or not password or len(password) > MAX_PASSWORD:
        _verify(_DUMMY_HASH, password or "")
        return SignIn(None, "unknown user" if user is None else "bad password")
    now = utcnow()
    status = account_status(user, now)
    if status != "active":
        _verify(_DUMMY_HASH, password)
        return SignIn(None, f"account {status}")
    if not _verify(user.password_hash, password):
        user.failed_logins = (user.failed_logins or 0) + 1
        locked = user.failed_logins >= LOCK_AFTER
        if locked:
            user.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
        return SignIn(None, "bad password", locked_now=locked)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return SignIn(user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False

"""Consular posts kept by administrators: created, closed, and what a post must be to take new work.

Posts are reference data (config/reference/posts.csv, loaded at each start by registry/reference.py); an
administrator adds a post the file does not have yet (`create_post`) and closes one (`close_post`). A closed
post (`active` False) keeps its code, its history and its cases: citizens and cases still name it. It takes no
new citizen (`require_open`), and it is closed only once none of its citizens is left to serve there: a
citizen ACTIVE or PENDING (awaiting the identity check) must be transferred to another post first.

Keyword-only functions taking the session, like registry/service.py; the views audit what they do.
"""
from __future__ import annotations

import re
import zoneinfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.errors import InputError, NotFound, Problem, RecordConflict
from hub.store.db import utcnow
from registry.models import Citizen, Post

KINDS = ("CONSULATE", "CONSULAR_SECTION")
LANGUAGE = re.compile(r"^[a-z]{2}$")  # ISO 639-1
# the citizens a post still serves: a closed post would leave them without one
SERVED_STATUSES = ("ACTIVE", "PENDING")


def unknown_languages(languages: list[str]) -> list[str]:
    """The entries of `languages` that are not ISO 639-1 codes (two lower-case letters)."""
    return [code for code in languages if not LANGUAGE.fullmatch(code)]


def unknown_time_zone(name: str) -> bool:
    """Whether `name` is no IANA time zone the system's database knows."""
    if not name or name.startswith("/") or ".." in name:
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return True
    return False


def languages_text(languages: list[str]) -> str:
    """As stored: unique codes, in the order given, ";"-separated."""
    return ";".join(dict.fromkeys(languages))


def create_post(session: Session, *, code: str, name: str, kind: str, country: str, city: str,
                jurisdiction: str, languages: list[str], time_zone: str, created_by: str) -> Post:
    """A new open post. RecordConflict (409) when the code is taken, by an open or a closed post: a code is
    never given to another post, since citizens' and cases' history names it."""
    existing = session.get(Post, code)
    if existing is not None:
        state = "an open" if existing.active else "a closed"
        raise RecordConflict(f"creating post {code}: the code is already {state} post's ({existing.name})",
                             [Problem("code already used", path="code")])
    post = Post(code=code, name=name, kind=kind, country=country, city=city, jurisdiction=jurisdiction,
                languages=languages_text(languages), time_zone=time_zone, active=True, created_by=created_by[:120])
    session.add(post)
    session.flush()
    return post


def served_citizens(session: Session, code: str) -> int:
    """How many citizens the post still serves (ACTIVE or PENDING)."""
    return session.scalar(select(func.count()).select_from(Citizen).where(
        Citizen.post_code == code, Citizen.status.in_(SERVED_STATUSES)))


def close_post(session: Session, *, code: str, reason: str) -> Post:
    """Close an open post (when and why kept). NotFound (404) for an unknown code; RecordConflict (409) when it
    is already closed or still serves citizens (how many is said): nothing changes then."""
    post = session.scalars(select(Post).where(Post.code == code).with_for_update()).first()
    if post is None:
        raise NotFound(f"no consular post with code {code!r}")
    if not post.active:
        raise RecordConflict(f"closing post {code}: it was closed on {post.closed_at:%Y-%m-%d}" if post.closed_at
                             else f"closing post {code}: it is already closed")
    served = served_citizens(session, code)
    if served:
        who = "1 citizen is" if served == 1 else f"{served} citizens are"
        raise RecordConflict(f"closing post {code}: {who} still registered there (active or awaiting the "
                             f"identity check); transfer them to another post first",
                             [Problem(f"{served} citizens still registered at the post", path="code")])
    post.active, post.closed_at, post.closed_reason = False, utcnow(), reason
    return post


def require_open(session: Session, *, code: str, doing: str) -> Post:
    """The post, open: NotFound for an unknown code, InputError (400) for a closed one (it takes no new work)."""
    post = session.get(Post, code)
    if post is None:
        raise NotFound(f"no consular post with code {code!r}")
    if not post.active:
        raise InputError(f"{doing}: post {code} is closed" +
                         (f" since {post.closed_at:%Y-%m-%d}" if post.closed_at else ""),
                         [Problem("the post is closed", path="post_code")])
    return post

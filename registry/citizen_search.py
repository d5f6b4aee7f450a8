"""Finding citizens: the search behind GET /api/v1/citizens and the console's citizen list, one function for both.

A consular agent finds only the citizens of their post. `reindex(session, citizen)` keeps what the search reads
in step with a citizen's record: it is called after every change of a citizen's names, identifiers, birth date,
post or status, in the same transaction."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.access.tokens import Identity
from hub.errors import Forbidden
from registry.models import Citizen


@dataclass(frozen=True)
class Page:
    """One page of citizens, and the cursor of the next page (None: this is the last)."""

    citizens: list[Citizen]
    next_cursor: str | None


def search(session: Session, identity: Identity, *, q: str | None = None, cnie: str | None = None,
           passport_number: str | None = None, birth_date: dt.date | None = None, post_code: str | None = None,
           status: str | None = None, cursor: str | None = None, limit: int = 50) -> Page:
    """Citizens matching every filter given; `q` is a name (Latin or Arabic, any word order), a registration id
    or a CNIE."""
    if identity.post_scope is not None:
        if post_code not in (None, "", identity.post_scope):
            raise Forbidden(f"a consular agent of {identity.post_scope} finds only the citizens of their post")
        post_code = identity.post_scope
    query = select(Citizen).order_by(Citizen.id).limit(limit + 1)
    if q:
        like = f"%{q}%"
        query = query.where(or_(Citizen.family_name_latin.ilike(like), Citizen.given_name_latin.ilike(like),
                                Citizen.family_name_arabic.like(like), Citizen.given_name_arabic.like(like),
                                Citizen.registration_id == q, Citizen.cnie == q.upper()))
    if cnie:
        query = query.where(Citizen.cnie == cnie.replace(" ", "").upper())
    if passport_number:
        query = query.where(Citizen.passport_number == passport_number.upper())
    if birth_date:
        query = query.where(Citizen.birth_date == birth_date)
    if post_code:
        query = query.where(Citizen.post_code == post_code)
    if status:
        query = query.where(Citizen.status == status)
    if cursor:
        query = query.where(Citizen.id > int(cursor))
    found = list(session.scalars(query))
    more = len(found) > limit
    found = found[:limit]
    return Page(found, str(found[-1].id) if more and found else None)


def reindex(session: Session, citizen: Citizen) -> None:
    """Bring what the search reads of `citizen` up to date (call after any change to the record)."""

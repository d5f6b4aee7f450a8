"""A citizen's record over its life: registration pending DGSN's identity check, corrections, death, transfer.

Functions taking the session, like registry/service.py; the routes are in registry/views.py, the console's
pages in registry/citizens_console.py.

- Registration (`register`): the record is PENDING until DGSN's identity check answers (the NEW registration
  case it opens, registry/services/registration.py, makes it ACTIVE or REJECTED). A CNIE is held by one live
  record only (PENDING or ACTIVE): a second is refused, naming the holder. A record with the same names and
  birth date is a near-duplicate: named in a warning, the registration still goes ahead (namesakes born the
  same day exist; DGSN's check of the CNIE tells them apart).
- Corrections (`correct`): civil data (names, birth, sex, CNIE, passport) and contact details (address abroad,
  phone, e-mail). A correction of the address corrects the record; a move that DGSN must be told of is an
  UPDATE registration case.
- Death (`mark_deceased`): by an agent, a transcribed death or a repatriation. A DECEASED citizen has no new
  case but those about the death (`check_may_open`).
- Transfer (`transfer`): to another open post. The citizen's cases stay where they were opened.

Every change is a row of `citizen_changes` with the value it replaced, who, when and why (`history`), and
`citizen_search.reindex` follows it in the same transaction.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from hub.access.tokens import Identity
from hub.errors import Problem, RecordConflict, ValueRefused
from hub.store.db import utcnow
from registry import citizen_search, names, service
from registry.models import Citizen, CitizenChange, Post

PENDING, ACTIVE, REJECTED, DECEASED = "PENDING", "ACTIVE", "REJECTED", "DECEASED"
REGISTRATION = "CONSULAR_REGISTRATION"
LIVE = (PENDING, ACTIVE)  # the records that hold their CNIE
CIVIL_FIELDS = ("given_name_latin", "family_name_latin", "given_name_arabic", "family_name_arabic", "birth_date",
                "birth_place", "sex", "cnie", "passport_number")
CONTACT_FIELDS = ("country", "city", "address_lines", "phone", "email")
CLEARABLE = ("cnie", "passport_number", "phone", "email")  # the fields a record may lack
# the cases a deceased citizen may still have: those about their death
ABOUT_THE_DEATH = {"REPATRIATION": lambda details: True,
                   "TRANSCRIPTION": lambda details: (details or {}).get("event") == "DEATH"}


# -- reading ---------------------------------------------------------------------------------------------

def cnie_holder(session: Session, cnie: str | None, *, other_than: Citizen | None = None) -> Citizen | None:
    """The live record (PENDING or ACTIVE) holding `cnie`, other than `other_than`."""
    if not cnie:
        return None
    query = select(Citizen).where(Citizen.cnie == cnie.replace(" ", "").upper(), Citizen.status.in_(LIVE))
    if other_than is not None and other_than.id is not None:
        query = query.where(Citizen.id != other_than.id)
    return session.scalars(query.order_by(Citizen.id)).first()


def deceased_holder(session: Session, cnie: str) -> Citizen | None:
    """The DECEASED record holding `cnie`, when no live one does (a judicial document for the dead)."""
    return session.scalars(select(Citizen).where(Citizen.cnie == cnie.replace(" ", "").upper(),
                                                 Citizen.status == DECEASED).order_by(Citizen.id.desc())).first()


def folded(name: str) -> str:
    """A name compared loosely, as the search compares names (registry/names.py): case, accents, Arabic letter
    variants, diacritics, tatweel and separators left out."""
    return " ".join(names.tokens(name))


def near_duplicates(session: Session, *, given_name_latin: str, family_name_latin: str, given_name_arabic: str,
                    family_name_arabic: str, birth_date: dt.date, other_than: Citizen | None = None) -> list[Citizen]:
    """The records (not REJECTED) born that day whose Latin or Arabic names are the same, loosely compared."""
    latin = (folded(given_name_latin), folded(family_name_latin))
    arabic = (folded(given_name_arabic), folded(family_name_arabic))
    same_day = session.scalars(select(Citizen).where(Citizen.birth_date == birth_date, Citizen.status != REJECTED)
                               .order_by(Citizen.id).limit(1000))
    return [c for c in same_day if (other_than is None or c.id != other_than.id) and
            ((folded(c.given_name_latin), folded(c.family_name_latin)) == latin or
             (folded(c.given_name_arabic), folded(c.family_name_arabic)) == arabic)]


def history(session: Session, citizen: Citizen, identity: Identity) -> list[CitizenChange]:
    """The changes of `citizen`'s record `identity` may see, oldest first: all of them for the citizen's post
    (and roles without a post); for a post the citizen left, those made while the citizen was there (the
    transfer out included). Forbidden for any other post."""
    query = select(CitizenChange).where(CitizenChange.citizen_id == citizen.id).order_by(CitizenChange.id)
    post = identity.post_scope
    if post is not None and post != citizen.post_code:
        if session.scalar(select(CitizenChange.id).where(CitizenChange.citizen_id == citizen.id,
                                                         CitizenChange.post_code == post).limit(1)) is None:
            identity.check_post(citizen.post_code, doing=f"reading the history of citizen {citizen.registration_id}")
        query = query.where(CitizenChange.post_code == post)
    return list(session.scalars(query))


def change_out(change: CitizenChange) -> dict:
    return {"at": change.at.isoformat(), "kind": change.kind, "field": change.field, "old": change.old_value,
            "new": change.new_value, "actor": change.actor, "reason": change.reason, "post_code": change.post_code}


# -- registration ----------------------------------------------------------------------------------------

def check_cnie_free(session: Session, cnie: str | None, *, other_than: Citizen | None = None,
                    scope: str | None = None) -> None:
    """409 when a live record holds `cnie`, naming it to a caller who may read it (`scope`: a consular agent's
    post; None for every post); another post's record is not named, so that a CNIE cannot be used to find where
    someone is registered. On PostgreSQL the transaction first takes a lock of that CNIE's own (released at its
    end), so that two registrations of one CNIE at once cannot both find it free (SQLite has one writer at a
    time)."""
    if cnie and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"cnie:{cnie.upper()}"})
    holder = cnie_holder(session, cnie, other_than=other_than)
    if holder is None:
        return
    if scope is None or holder.post_code == scope:
        named = (f"citizen {holder.registration_id} ({holder.status}, registered at {holder.post_code}): correct or "
                 "transfer that record instead")
    else:
        named = "a live record at another post: ask that post, or the consular directorate, to look into it"
    raise RecordConflict(f"CNIE {cnie} is already held by {named}", [Problem("already held by a live record",
                                                                               path="cnie")])


def register(session: Session, *, actor: str, scope: str | None = None, **person) -> tuple[Citizen, list[dict]]:
    """A PENDING citizen (DGSN's identity check decides), and the warnings about near-duplicates. The caller
    opens the registration case in the same transaction. `scope` (a consular agent's post) limits what the
    conflict and the warnings say of other posts' records: that there is one, not who or where."""
    check_cnie_free(session, person.get("cnie"), scope=scope)
    twins = near_duplicates(session, **{k: person[k] for k in ("given_name_latin", "family_name_latin",
                                                                "given_name_arabic", "family_name_arabic",
                                                                "birth_date")})
    citizen = service.register_citizen(session, status=PENDING, **person)
    _record(session, citizen, kind="REGISTERED", field="status", old=None, new=PENDING, actor=actor,
            reason="registered, pending DGSN's identity check")
    warnings = [_near_duplicate(twin, scope) for twin in twins]
    return citizen, warnings


def _near_duplicate(twin: Citizen, scope: str | None) -> dict:
    if scope is None or twin.post_code == scope:
        return {"kind": "NEAR_DUPLICATE", "registration_id": twin.registration_id, "post_code": twin.post_code,
                "status": twin.status,
                "detail": f"{twin.registration_id} has the same names and birth date: check it is not the same person"}
    return {"kind": "NEAR_DUPLICATE", "registration_id": None, "post_code": None, "status": None,
            "detail": "a record at another post has the same names and birth date: check with the consular "
                      "directorate that it is not the same person"}


# -- changes ---------------------------------------------------------------------------------------------

def _text(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _record(session: Session, citizen: Citizen, *, kind: str, field: str, old, new, actor: str, reason: str,
            post_code: str | None = None) -> CitizenChange:
    change = CitizenChange(citizen_id=citizen.id, at=utcnow(), kind=kind, field=field, old_value=_text(old),
                           new_value=_text(new), actor=actor[:120], reason=reason or "",
                           post_code=post_code or citizen.post_code)
    session.add(change)
    return change


def correct(session: Session, citizen: Citizen, changes: dict, *, reason: str, actor: str,
            scope: str | None = None) -> list[CitizenChange]:
    """Apply the fields of `changes` that differ from the record; each is a history row with the old value.
    Civil data needs a reason; a CNIE already held by another live record is refused (nothing changed; named
    only to a caller of its post, `scope`, as check_cnie_free says)."""
    unknown = set(changes) - set(CIVIL_FIELDS) - set(CONTACT_FIELDS)
    if unknown:
        raise ValueRefused(sorted(unknown)[0], f"{', '.join(sorted(unknown))}: not a field that is corrected")
    different = {f: v for f, v in changes.items() if getattr(citizen, f) != v}
    if any(f in CIVIL_FIELDS for f in different) and not reason:
        raise ValueRefused("reason", "a correction of civil data says why (the document that proves it)")
    if "cnie" in different:
        check_cnie_free(session, different["cnie"], other_than=citizen, scope=scope)
    birth = different.get("birth_date", citizen.birth_date)
    if birth > utcnow().date() or (citizen.died_on and birth > citizen.died_on):
        raise ValueRefused("birth_date", "a birth date in the future or after the death")
    rows = []
    for field, value in different.items():
        rows.append(_record(session, citizen, kind="CORRECTION" if field in CIVIL_FIELDS else "CONTACT",
                            field=field, old=getattr(citizen, field), new=value, actor=actor,
                            reason=reason))
        setattr(citizen, field, value)
    if rows:
        citizen_search.reindex(session, citizen)
    return rows


def mark_deceased(session: Session, citizen: Citizen, *, died_on: dt.date, reason: str, actor: str) -> bool:
    """The citizen is DECEASED since `died_on`; False when that was already recorded (the same date again).
    Another date for a death already recorded is a correction of `died_on`, refused here (409)."""
    if citizen.status == DECEASED:
        if citizen.died_on == died_on:
            return False
        raise RecordConflict(f"citizen {citizen.registration_id} is already recorded as deceased on "
                              f"{citizen.died_on.isoformat() if citizen.died_on else 'an unknown date'}",
                              [Problem("a death is recorded once", path="died_on")])
    if died_on > utcnow().date() or died_on < citizen.birth_date:
        raise ValueRefused("died_on", f"{died_on.isoformat()} is in the future or before the birth")
    _record(session, citizen, kind="DECEASED", field="status", old=citizen.status, new=DECEASED, actor=actor,
            reason=f"died on {died_on.isoformat()}: {reason}")
    citizen.status, citizen.died_on = DECEASED, died_on
    citizen_search.reindex(session, citizen)
    return True


def transfer(session: Session, citizen: Citizen, *, to_post: str, reason: str, actor: str) -> CitizenChange:
    """The citizen moves to `to_post` (open, known, another one); their cases stay where they were opened."""
    post = session.get(Post, to_post)
    if post is None or not post.active:
        raise ValueRefused("post_code", f"{to_post} is {'closed' if post else 'not a consular post'}: a "
                                               "citizen is transferred to an open post")
    if post.code == citizen.post_code:
        raise ValueRefused("post_code", f"citizen {citizen.registration_id} is already at {to_post}")
    if citizen.status == DECEASED:
        raise RecordConflict(f"citizen {citizen.registration_id} is deceased: the record stays at "
                              f"{citizen.post_code}")
    change = _record(session, citizen, kind="TRANSFER", field="post_code", old=citizen.post_code, new=post.code,
                     actor=actor, reason=reason)
    citizen.post_code = post.code
    citizen_search.reindex(session, citizen)
    return change


def check_may_open(citizen: Citizen | None, service_name: str, details: dict | None) -> None:
    """409 naming why, before anything is opened: a deceased citizen has no new case but those about the death
    (a repatriation, a death transcription); a citizen whose identity DGSN has not confirmed (PENDING,
    REJECTED) has no case but a registration (or one about their death)."""
    if citizen is None or citizen.status == ACTIVE:
        return
    about_the_death = ABOUT_THE_DEATH.get(service_name)
    if about_the_death is not None and about_the_death(details):
        return
    if citizen.status in (PENDING, REJECTED):
        if service_name != REGISTRATION:
            raise RecordConflict(f"citizen {citizen.registration_id} is {citizen.status}: DGSN has not confirmed "
                                  f"their identity, so no {service_name} case can be opened for them yet")
        return
    if citizen.status == DECEASED:
        raise RecordConflict(f"citizen {citizen.registration_id} is deceased (on "
                              f"{citizen.died_on.isoformat() if citizen.died_on else 'an unknown date'}): no new "
                              f"{service_name} case; only a repatriation or the transcription of the death")


# -- what cases do to the record --------------------------------------------------------------------------

def identity_checked(session: Session, citizen: Citizen, *, status: str, case_reference: str) -> None:
    """DGSN's answer to a NEW registration: a PENDING citizen becomes ACTIVE or REJECTED (a record that moved on
    meanwhile, a death recorded, stays as it is)."""
    if citizen.status != PENDING:
        return
    _record(session, citizen, kind="IDENTITY_CHECK", field="status", old=PENDING, new=status, actor="DGSN",
            reason=f"identity check of case {case_reference}")
    citizen.status = status
    citizen_search.reindex(session, citizen)


def registration_cancelled(session: Session, citizen: Citizen, *, case_reference: str, reason: str, actor: str) -> None:
    """A NEW registration's case cancelled before DGSN answered: the PENDING record is REJECTED (not registered),
    so that its CNIE is free for a registration made anew."""
    if citizen.status != PENDING:
        return
    _record(session, citizen, kind="IDENTITY_CHECK", field="status", old=PENDING, new=REJECTED, actor=actor,
            reason=f"registration case {case_reference} cancelled: {reason}")
    citizen.status = REJECTED
    citizen_search.reindex(session, citizen)


def address_confirmed(session: Session, citizen: Citizen, address: dict, *, case_reference: str) -> None:
    """An UPDATE registration's new address abroad, once DGSN confirmed the identity: kept like a correction."""
    correct(session, citizen, {"country": address["country"], "city": address["city"],
                               "address_lines": "\n".join(address["lines"])},
            reason=f"address abroad updated by registration case {case_reference}", actor=f"case {case_reference}")


def death_reported(session: Session, citizen: Citizen, *, died_on: dt.date, case_reference: str, what: str) -> None:
    """A case establishes the citizen's death (a repatriation opened, a death transcribed): DECEASED, unless a
    death is already recorded (that date is kept)."""
    if citizen.status == DECEASED:
        return
    mark_deceased(session, citizen, died_on=died_on, reason=f"{what} (case {case_reference})",
                  actor=f"case {case_reference}")

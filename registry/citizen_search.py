"""Finding citizens: the search behind GET /api/v1/citizens and the console's citizen list, one function for both.

A consular agent finds only the citizens of their post. `reindex(session, citizen)` keeps what the search reads
in step with a citizen's record: it is called after every change of a citizen's names, identifiers, birth date,
post or status, in the same transaction.

How a name is found. Each word of a citizen's four name fields (Latin and Arabic, given and family) is a row of
citizen_name_tokens, normalised by registry/names.py (case, accents, Arabic letter variants folded). A query's
words are normalised the same way and a citizen matches when each query word is one of their name words, in any
order and in either script; a word of three letters or more also matches the name words it begins ("Fati"
finds "Fatima"), a shorter one only itself ("el" finds "El Amrani", not "Elena"). A prefix is first turned into
the stored words it begins (one index probe each, `words_beginning`), so that the database compares whole words
by equality: its statistics say how common each word is, and (token, citizen_id), or (token, post_code,
citizen_id) for an agent's post, lists a word's citizens in id order, so that a page of a common name is read
from the start of its lists and a rare name from its few entries. A query that looks like an identifier
(registration id, CNIE, passport number) is looked up as one instead.

Results come in registration order (citizen id), a page at a time: the opaque cursor carries the last citizen's id
and a digest of the search it belongs to, so that a cursor is refused (400) when it is not one this function gave,
or when it is used with other filters.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from hub.access.tokens import Identity
from hub.errors import Forbidden, SearchRefused
from registry import names
from registry.inputs import CNIE
from registry.models import Citizen, CitizenNameToken

MAX_LIMIT = 200
MAX_WORDS = 8            # a name has a few words: more is not a name, and each one costs a probe
MIN_LETTERS = 2          # a one-letter query would read every name beginning with it
PREFIX_FROM = 3          # words this long or longer match the name words they begin
MAX_EXPANSION = 30       # more name words begin with a prefix than this: the prefix is read as a range
PASSPORT = r"^[A-Z0-9]{6,9}$"
_CURSOR = re.compile(r"^([0-9]{1,18})\.([0-9a-f]{16})$")


@dataclass(frozen=True)
class Page:
    """One page of citizens, and the cursor of the next page (None: this is the last)."""

    citizens: list[Citizen]
    next_cursor: str | None


@dataclass(frozen=True)
class Query:
    """What `q` asks for: an identifier looked up as one, or the words of a name (normalised)."""

    identifier: str | None
    words: tuple[str, ...]


def read_query(q: str) -> Query:
    """`q` as the search reads it; SearchRefused when it is too short or too long to be a useful search."""
    compact = re.sub(r"[\s-]", "", q).upper()
    if re.fullmatch(r"MRE[0-9]{7,10}", compact):
        return Query("MRE-" + compact[3:], ())
    if any(ch.isdigit() for ch in compact) and (re.fullmatch(CNIE, compact) or re.fullmatch(PASSPORT, compact)):
        return Query(compact, ())
    words = tuple(names.tokens(q))
    if sum(len(word) for word in words) < MIN_LETTERS:
        raise SearchRefused("q", f"{len(''.join(words))} letter(s) is too short a search: give at least "
                                 f"{MIN_LETTERS} letters of a name, or an identifier")
    if len(words) > MAX_WORDS:
        raise SearchRefused("q", f"{len(words)} words: a name search takes at most {MAX_WORDS}")
    return Query(None, words)


def _word_matches(column, word: str):
    """`column` (a name word) is `word`, or begins with it when `word` is long enough to say something."""
    if len(word) < PREFIX_FROM:
        return column == word
    end = names.prefix_end(word)
    return column >= word if end is None else (column >= word) & (column < end)


def _digest(**filters) -> str:
    """What a cursor is bound to: the search's filters (never shown: only compared)."""
    text = "\x1f".join(f"{key}={'' if value is None else value}" for key, value in sorted(filters.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(last_id: int, digest: str) -> str:
    return base64.urlsafe_b64encode(f"{last_id}.{digest}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, digest: str) -> int:
    """The last citizen id of the previous page; SearchRefused when `cursor` is not one of this search's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raw = ""
    found = _CURSOR.fullmatch(raw) if len(cursor) <= 64 else None
    if found is None:
        raise SearchRefused("cursor", "not a cursor this search gave (pass next_cursor from the previous page as it is)")
    if found.group(2) != digest:
        raise SearchRefused("cursor", "belongs to another search: keep the filters of the page that gave it")
    return int(found.group(1))


def search(session: Session, identity: Identity, *, q: str | None = None, cnie: str | None = None,
           passport_number: str | None = None, birth_date: dt.date | None = None, post_code: str | None = None,
           status: str | None = None, cursor: str | None = None, limit: int = 50) -> Page:
    """Citizens matching every filter given, in registration order; `q` is a name (Latin or Arabic, any word
    order, see the module), a registration id, a CNIE or a passport number."""
    if identity.post_scope is not None:
        if post_code not in (None, "", identity.post_scope):
            raise Forbidden(f"a consular agent of {identity.post_scope} finds only the citizens of their post")
        post_code = identity.post_scope
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchRefused("limit", f"{limit} is not between 1 and {MAX_LIMIT}")
    post_code = post_code or None
    cnie = cnie.replace(" ", "").upper() if cnie else None
    passport_number = passport_number.replace(" ", "").upper() if passport_number else None
    status = status.upper() if status else None
    parsed = read_query(q) if q and q.strip() else None

    digest = _digest(q=" ".join(parsed.words) if parsed and not parsed.identifier else (parsed and parsed.identifier),
                     cnie=cnie, passport_number=passport_number, birth_date=birth_date, post_code=post_code,
                     status=status, scope=identity.post_scope)
    after = decode_cursor(cursor, digest) if cursor else None

    query = select(Citizen)
    if parsed is not None and parsed.identifier is not None:
        query = query.where(or_(Citizen.registration_id == parsed.identifier, Citizen.cnie == parsed.identifier,
                                Citizen.passport_number == parsed.identifier))
    elif parsed is not None:
        named = _named(session, parsed.words, post_code, after)
        if named is None:
            return Page([], None)
        if not any((cnie, passport_number, birth_date, status)):
            # a page of the names' matches on its own, then only those citizens are read
            named = named.distinct().order_by(named.selected_columns[0]).limit(limit + 1)
        query = query.where(Citizen.id.in_(named))
    if cnie:
        query = query.where(Citizen.cnie == cnie)
    if passport_number:
        query = query.where(Citizen.passport_number == passport_number)
    if birth_date:
        query = query.where(Citizen.birth_date == birth_date)
    if post_code:
        query = query.where(Citizen.post_code == post_code)
    if status:
        query = query.where(Citizen.status == status)
    if after is not None:
        query = query.where(Citizen.id > after)
    found = list(session.scalars(query.order_by(Citizen.id).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    return Page(found, encode_cursor(found[-1].id, digest) if more and found else None)


def words_beginning(session: Session, word: str) -> list[str]:
    """The name words stored that `word` matches (itself, and from PREFIX_FROM letters the words it begins), at most
    MAX_EXPANSION + 1 of them, each found by one probe of the (token, citizen_id) index."""
    if len(word) < PREFIX_FROM:
        return [word]
    end, found, at = names.prefix_end(word), [], None
    while len(found) <= MAX_EXPANSION:
        following = select(func.min(CitizenNameToken.token)).where(
            CitizenNameToken.token >= word if at is None else CitizenNameToken.token > at)
        if end is not None:
            following = following.where(CitizenNameToken.token < end)
        at = session.scalar(following)
        if at is None:
            break
        found.append(at)
    return found


def _named(session: Session, words: tuple[str, ...], post_code: str | None, after: int | None):
    """A select of the ids of the citizens whose name words match every one of `words` (at `post_code` when
    given) after the id `after`; None when a word matches no name word at all.

    Each query word becomes the name words it matches, so that the database compares whole words by equality:
    it then knows how common each is (its statistics hold the common words) and reads (token, citizen_id) in id
    order, joining the words' lists as it walks them, a page's worth for common names, or starting from the
    rarest word's few entries."""
    matched = []
    for word in words:
        candidates = words_beginning(session, word)
        if not candidates:
            return None
        matched.append((word, candidates))
    matched.sort(key=lambda pair: len(pair[1]))
    tables = [aliased(CitizenNameToken) for _ in matched]
    first = tables[0]
    ids = select(first.citizen_id)  # a citizen twice when two of their words begin with one prefix: IN takes it once
    for table, (word, candidates) in zip(tables, matched):
        if table is not first:
            ids = ids.join(table, table.citizen_id == first.citizen_id)
        if len(candidates) > MAX_EXPANSION:  # a short prefix of many words: their range
            ids = ids.where(_word_matches(table.token, word))
        else:
            ids = ids.where(table.token == candidates[0] if len(candidates) == 1 else table.token.in_(candidates))
        if post_code:
            ids = ids.where(table.post_code == post_code)
    if after is not None:
        ids = ids.where(first.citizen_id > after)
    return ids


def index_rows(citizen: Citizen) -> list[dict]:
    """The citizen_name_tokens rows of `citizen` (bulk loads write these too)."""
    return [{"citizen_id": citizen.id, "token": token, "post_code": citizen.post_code}
            for token in names.tokens(citizen.given_name_latin, citizen.family_name_latin,
                                      citizen.given_name_arabic, citizen.family_name_arabic)]


def reindex(session: Session, citizen: Citizen) -> None:
    """Bring what the search reads of `citizen` up to date (call after any change to the record)."""
    session.flush()  # the citizen has its id, and the index rows follow what the session holds
    session.execute(delete(CitizenNameToken).where(CitizenNameToken.citizen_id == citizen.id))
    rows = index_rows(citizen)
    if rows:
        session.execute(insert(CitizenNameToken), rows)

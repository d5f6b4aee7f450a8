"""Reference data loaded from files in the repository (posts change over time: never hard-coded).

How the posts' file (config/reference/posts.csv) and the database agree: the file is the source of the
posts it lists, the database of what administrators did since (registry/posts.py). At each start the file
adds the posts the database does not have, and brings up to date the descriptive fields (name, kind, country,
city, jurisdiction, languages, time zone) of the posts it added before. It never deletes a post, never closes
or reopens one (an administrator's closure stays), and never changes a post an administrator created through
the API (`created_by` set), even when the file lists the same code: that post is left as it is, and said in
the log. So reloading the file undoes nothing an administrator did.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from registry.models import Post
from registry.posts import KINDS, languages_text, unknown_languages, unknown_time_zone

log = logging.getLogger("registry.reference")
_FIELDS = ("name", "kind", "country", "city", "jurisdiction", "languages", "time_zone")
_CODE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{2,8}$")
# columns a file may leave out (an older file), and the value they then take
_OPTIONAL = {"jurisdiction": "", "languages": "ar;fr", "time_zone": "UTC"}


def _row(path: Path, line: int, row: dict) -> dict:
    """One line of the file as a post's fields; ValueError naming the file, line and column when wrong."""
    def wrong(column: str, why: str) -> ValueError:
        return ValueError(f"{path}:{line}: {column} {why}")
    code = (row.get("code") or "").strip()
    if not _CODE.fullmatch(code):
        raise wrong("code", f"must be like FR-PARIS (country, dash, 2 to 8 letters or digits), not {code!r}")
    if row.get("kind") not in KINDS:
        raise wrong("kind", f"must be one of {sorted(KINDS)}, not {row.get('kind')!r}")
    values = {name: (row.get(name) if row.get(name) is not None else _OPTIONAL.get(name, "")).strip()
              for name in _FIELDS}
    if not re.fullmatch(r"[A-Z]{2}", values["country"]):
        raise wrong("country", f"must be an ISO 3166-1 alpha-2 code, not {values['country']!r}")
    if not values["name"] or not values["city"]:
        raise wrong("name" if not values["name"] else "city", "must not be empty")
    languages = [code for code in values["languages"].split(";") if code]
    if not languages or unknown_languages(languages):
        raise wrong("languages", f"must be ISO 639-1 codes separated by ';' (ar;fr), not {values['languages']!r}")
    values["languages"] = languages_text(languages)
    if unknown_time_zone(values["time_zone"]):
        raise wrong("time_zone", f"must be an IANA time zone (Europe/Paris), not {values['time_zone']!r}")
    return {"code": code, **values}


def read_posts(path: Path) -> dict[str, dict]:
    """code -> fields of every post the file lists, checked; ValueError naming the line of the first wrong one."""
    wanted: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            post = _row(path, line, row)
            if post["code"] in wanted:
                raise ValueError(f"{path}:{line}: code {post['code']} is listed twice")
            wanted[post["code"]] = post
    return wanted


def load_posts(session: Session, path: Path) -> int:
    """Add the file's new posts and update those the file added before (one read of the table; only new or
    changed rows are written, so a start with nothing changed writes nothing); returns how many rows the file
    holds. See the module's docstring for what the file never does."""
    wanted = read_posts(path)
    stored = {code: (dict(zip(_FIELDS, values)), created_by) for code, created_by, *values in
              session.execute(select(Post.code, Post.created_by, *(getattr(Post, name) for name in _FIELDS)))}
    new = [{**post, "active": True} for code, post in wanted.items() if code not in stored]
    if new:
        session.execute(insert(Post), new)
    for code, post in wanted.items():
        if code not in stored:
            continue
        fields, created_by = stored[code]
        values = {name: post[name] for name in _FIELDS}
        if created_by is not None:
            if fields != values:
                log.info("post %s was created by %s: the reference file's line for it is not applied", code,
                         created_by)
            continue
        if fields != values:
            session.execute(update(Post).where(Post.code == code).values(**values))
    return len(wanted)

"""Reference data loaded from files in the repository (posts change over time: never hard-coded)."""
from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from registry.models import Post

KINDS = {"CONSULATE", "CONSULAR_SECTION"}
_FIELDS = ("name", "kind", "country", "city", "jurisdiction", "active")


def load_posts(session: Session, path: Path) -> int:
    """Insert or update every post in the CSV file (one read of the table; only new or changed rows are
    written, so a start with nothing changed writes nothing); returns how many rows the file holds."""
    wanted = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row.get("kind") not in KINDS:
                raise ValueError(f"{path}:{line}: kind must be one of {sorted(KINDS)}, not {row.get('kind')!r}")
            wanted[row["code"]] = {"name": row["name"], "kind": row["kind"], "country": row["country"],
                                   "city": row["city"], "jurisdiction": row.get("jurisdiction", ""), "active": True}
    stored = {code: dict(zip(_FIELDS, values)) for code, *values in
              session.execute(select(Post.code, *(getattr(Post, name) for name in _FIELDS)))}
    new = [{"code": code, **values} for code, values in wanted.items() if code not in stored]
    if new:
        session.execute(insert(Post), new)
    for code, values in wanted.items():
        if code in stored and stored[code] != values:
            session.execute(update(Post).where(Post.code == code).values(**values))
    return len(wanted)

"""Reference data loaded from files in the repository (posts change over time: never hard-coded)."""
from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy.orm import Session

from registry.models import Post

KINDS = {"CONSULATE", "CONSULAR_SECTION"}


def load_posts(session: Session, path: Path) -> int:
    """Insert or update every post in the CSV file; returns how many rows it holds."""
    count = 0
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row.get("kind") not in KINDS:
                raise ValueError(f"{path}:{line}: kind must be one of {sorted(KINDS)}, not {row.get('kind')!r}")
            session.merge(Post(code=row["code"], name=row["name"], kind=row["kind"], country=row["country"],
                               city=row["city"], jurisdiction=row.get("jurisdiction", ""), active=True))
            count += 1
    return count

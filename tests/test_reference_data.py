"""The posts' reference file (config/reference/posts.csv) loaded into the registry's table at each start."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.store.db import make_engine, make_sessionmaker
from registry.models import Post
from registry.reference import load_posts

HEADER = "code,name,kind,country,city,jurisdiction\n"


def posts(sessions) -> dict[str, tuple]:
    with sessions() as session:
        return {p.code: (p.name, p.kind, p.city, p.jurisdiction) for p in session.scalars(select(Post))}


def test_the_table_follows_the_file_new_changed_and_unchanged_rows(database_url, tmp_path):
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    path = tmp_path / "posts.csv"
    path.write_text(HEADER + "FR-PARIS,Consulat général de Paris,CONSULATE,FR,Paris,75\n"
                             "ES-MADRID,Consulat de Madrid,CONSULATE,ES,Madrid,\n", encoding="utf-8")
    with sessions.begin() as session:
        assert load_posts(session, path) == 2
    path.write_text(HEADER + "FR-PARIS,Consulat général de Paris,CONSULATE,FR,Paris,75;92\n"
                             "ES-MADRID,Consulat de Madrid,CONSULATE,ES,Madrid,\n"
                             "IT-ROME,Section consulaire de Rome,CONSULAR_SECTION,IT,Rome,\n", encoding="utf-8")
    with sessions.begin() as session:
        assert load_posts(session, path) == 3
    assert posts(sessions) == {"FR-PARIS": ("Consulat général de Paris", "CONSULATE", "Paris", "75;92"),
                               "ES-MADRID": ("Consulat de Madrid", "CONSULATE", "Madrid", ""),
                               "IT-ROME": ("Section consulaire de Rome", "CONSULAR_SECTION", "Rome", "")}
    engine.dispose()


def test_an_unknown_kind_names_the_line_and_loads_nothing(database_url, tmp_path):
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    path = tmp_path / "posts.csv"
    path.write_text(HEADER + "FR-LYON,Consulat de Lyon,CONSULATE,FR,Lyon,\nFR-NICE,Nice,EMBASSY,FR,Nice,\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"posts.csv:3: kind must be one of"):
        with sessions.begin() as session:
            load_posts(session, path)
    assert "FR-LYON" not in posts(sessions)
    engine.dispose()

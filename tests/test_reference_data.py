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


# -- the file as shipped, and how it agrees with what administrators did --------------------------------

from pathlib import Path  # noqa: E402

from hub.store.db import utcnow  # noqa: E402
from registry import posts as post_keeping  # noqa: E402
from registry.reference import read_posts  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "reference" / "posts.csv"
FULL_HEADER = "code,name,kind,country,city,jurisdiction,languages,time_zone\n"


def test_the_shipped_file_holds_the_48_consulates_and_87_consular_sections():
    shipped = read_posts(SHIPPED)  # every line checked: code, kind, country, languages, IANA time zone
    kinds = [post["kind"] for post in shipped.values()]
    assert (kinds.count("CONSULATE"), kinds.count("CONSULAR_SECTION")) == (48, 87)
    # the codes the tests, the demo and existing databases use are still there
    for code in ("FR-PARIS", "FR-ORLY", "FR-LYON", "ES-MADRID", "ES-BARCEL", "IT-MILANO", "IT-ROMA", "BE-BRUX",
                 "NL-AMSTER", "DE-DUSSEL", "LY-TRIPOLI"):
        assert code in shipped, code
    assert shipped["ES-LPGC"]["time_zone"] == "Atlantic/Canary" and shipped["FR-PARIS"]["time_zone"] == "Europe/Paris"
    assert all(post["languages"].split(";")[0] == "ar" for post in shipped.values())  # every post serves in Arabic
    assert len({(post["country"], post["city"]) for post in shipped.values()}) == len(shipped)


@pytest.mark.parametrize("line, named", [
    ("FR-NICE,Nice,CONSULATE,FR,Nice,,ar;fr,Europe/Nowhere", "posts.csv:3: time_zone must be an IANA time zone"),
    ("FR-NICE,Nice,CONSULATE,FR,Nice,,ar;FRA,Europe/Paris", "posts.csv:3: languages must be ISO 639-1"),
    ("FR-LYON,Lyon again,CONSULATE,FR,Lyon,,ar,Europe/Paris", "posts.csv:3: code FR-LYON is listed twice"),
    ("nice,Nice,CONSULATE,FR,Nice,,ar,Europe/Paris", "posts.csv:3: code must be like FR-PARIS"),
])
def test_a_wrong_line_is_named_with_its_column(tmp_path, line, named):
    path = tmp_path / "posts.csv"
    path.write_text(FULL_HEADER + "FR-LYON,Consulat de Lyon,CONSULATE,FR,Lyon,,ar;fr,Europe/Paris\n" + line + "\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match=named):
        read_posts(path)


@pytest.mark.both_databases
def test_reloading_the_file_never_reopens_a_closed_post_nor_changes_one_an_administrator_created(database_url,
                                                                                                  tmp_path):
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    path = tmp_path / "posts.csv"
    path.write_text(FULL_HEADER + "FR-PARIS,Consulat général de Paris,CONSULATE,FR,Paris,75,ar;fr,Europe/Paris\n"
                                  "FR-BASTIA,Consulat de Bastia,CONSULATE,FR,Bastia,Corse,ar;fr,Europe/Paris\n",
                    encoding="utf-8")
    with sessions.begin() as session:
        load_posts(session, path)
    with sessions.begin() as session:  # an administrator closes a post of the file and creates one of their own
        post_keeping.close_post(session, code="FR-BASTIA", reason="jurisdiction joined to Marseille")
        post_keeping.create_post(session, code="FR-NICE", name="Consulat de Nice", kind="CONSULATE", country="FR",
                                 city="Nice", jurisdiction="Alpes-Maritimes", languages=["ar", "fr"],
                                 time_zone="Europe/Paris", created_by="token abc (admin, administrator)")
    # the next start's file still lists Bastia as it was, now lists Nice otherwise, and moves Paris's jurisdiction
    path.write_text(FULL_HEADER + "FR-PARIS,Consulat général de Paris,CONSULATE,FR,Paris,75;92,ar;fr,Europe/Paris\n"
                                  "FR-BASTIA,Consulat de Bastia,CONSULATE,FR,Bastia,Corse,ar;fr,Europe/Paris\n"
                                  "FR-NICE,Nice (file),CONSULAR_SECTION,FR,Nice,,ar,Europe/Paris\n", encoding="utf-8")
    before = utcnow()
    with sessions.begin() as session:
        assert load_posts(session, path) == 3
    with sessions() as session:
        stored = {p.code: p for p in session.scalars(select(Post))}
        assert stored["FR-PARIS"].jurisdiction == "75;92" and stored["FR-PARIS"].active  # the file's own, updated
        bastia = stored["FR-BASTIA"]
        assert not bastia.active and bastia.closed_reason == "jurisdiction joined to Marseille"
        assert bastia.closed_at < before
        nice = stored["FR-NICE"]  # the administrator's, as they made it
        assert (nice.name, nice.kind, nice.languages, nice.active) == ("Consulat de Nice", "CONSULATE", "ar;fr", True)
        assert nice.created_by.startswith("token abc")
    with sessions.begin() as session:  # and a post of the file the file no longer lists stays (never deleted)
        path.write_text(FULL_HEADER, encoding="utf-8")
        assert load_posts(session, path) == 0
    assert set(posts(sessions)) == {"FR-PARIS", "FR-BASTIA", "FR-NICE"}
    engine.dispose()

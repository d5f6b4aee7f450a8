"""Finding citizens (registry/citizen_search.py) on both databases: by a name typed another way (Arabic letter
forms, accents, capitals, word order, the start of a word), by identifier, birth date and status, a page at a time
by a cursor that cannot be forged, and for a consular agent only among their post's citizens. The index is filled
by the migration for the citizens stored before it, and kept in step by `reindex`."""
from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from sqlalchemy import insert, select

from hub.access.tokens import Identity
from hub.errors import Forbidden
from hub.store.db import alembic_config, make_engine, make_sessionmaker
from registry import citizen_search, service
from registry.citizen_search import SearchRefused, search
from registry.models import Citizen, CitizenNameToken, Post

pytestmark = pytest.mark.both_databases

PARIS, MADRID = "FR-PARIS", "ES-MADRID"
ADMIN = Identity(token_id="t-admin", name="test", role="administrator")
PARIS_AGENT = Identity(token_id="t-agent", name="test", role="consular_agent", post_code=PARIS)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    made = make_sessionmaker(engine)
    with made.begin() as session:
        for code, country, city in ((PARIS, "FR", "Paris"), (MADRID, "ES", "Madrid")):
            if session.get(Post, code) is None:
                session.add(Post(code=code, name=f"Consulat {city}", kind="CONSULATE", country=country, city=city))
    yield made
    engine.dispose()


def _register(sessions, given: str, family: str, given_ar: str, family_ar: str, *, post: str = PARIS,
              born: dt.date = dt.date(1985, 3, 14), cnie: str | None = None, passport: str | None = None,
              status: str = "ACTIVE") -> str:
    with sessions.begin() as session:
        return service.register_citizen(
            session, post_code=post, given_name_latin=given, family_name_latin=family, given_name_arabic=given_ar,
            family_name_arabic=family_ar, birth_date=born, sex="M", country=post[:2], city="Paris", cnie=cnie,
            passport_number=passport, status=status).registration_id


def _found(sessions, identity=ADMIN, **filters) -> list[str]:
    with sessions() as session:
        return [c.registration_id for c in search(session, identity, **filters).citizens]


def test_a_name_is_found_however_it_is_typed(sessions):
    amine = _register(sessions, "Amine", "El Amrani", "أمين", "العمراني", cnie="BK123456")
    fatima = _register(sessions, "Fatima Zahra", "Aït Bennani", "فاطمة الزهراء", "آيت بناني")
    helene = _register(sessions, "Hélène", "Laâroussi", "هيلين", "العروسي")
    yahya = _register(sessions, "Yahya", "Idrissi", "يحيى", "إدريسي")
    _register(sessions, "Amina", "Bennis", "أمينة", "بنيس")  # starts like Amine, in neither script the same name

    assert _found(sessions, q="امين العمراني") == [amine]            # alef with hamza typed as a bare alef
    assert _found(sessions, q="العمراني أمين") == [amine]            # family name first
    assert _found(sessions, q="EL AMRANI amine") == [amine]          # capitals, word order
    assert _found(sessions, q="فاطمه الزهراء ايت بناني") == [fatima]  # ta marbuta as ha, alef madda as alef
    assert _found(sessions, q="فَاطِمَة  بـنـانـي") == [fatima]           # harakat and tatweel
    assert _found(sessions, q="Ait-Bennani") == [fatima]             # a hyphen, no diaeresis
    assert _found(sessions, q="helene laaroussi") == [helene]        # no accents
    assert _found(sessions, q="يحيي ادريسي") == [yahya]             # alef maqsura typed as ya, hamza below dropped
    assert _found(sessions, q="Amine Bennis") == []                  # every word must match the same citizen
    assert _found(sessions, q="Benn") == [fatima, _found(sessions, q="Bennis")[0]]  # the start of a word
    assert _found(sessions, q="el amr") == [amine]
    assert _found(sessions, q="Idr") == [yahya]


def test_short_words_match_whole_words_and_a_one_letter_search_is_refused(sessions):
    el = _register(sessions, "Omar", "El Fassi", "عمر", "الفاسي")
    _register(sessions, "Elena", "Fassi", "إلينا", "فاسي")
    assert _found(sessions, q="el fassi") == [el]   # "el" is the word El, not the start of Elena
    for q in ("a", " b ", "é", "-", "أ", "ـ"):
        with pytest.raises(SearchRefused, match="^q: "):
            _found(sessions, q=q)
    with pytest.raises(SearchRefused, match="^q: 9 words"):
        _found(sessions, q="a b c d e f g h i")
    assert _found(sessions, q="  ") == _found(sessions)  # blank: no name filter


def test_identifiers_birth_date_and_status(sessions):
    one = _register(sessions, "Karim", "Tazi", "كريم", "تازي", cnie="AB12345", passport="RX1234567",
                    born=dt.date(1970, 1, 2))
    two = _register(sessions, "Karim", "Tazi", "كريم", "تازي", born=dt.date(1990, 5, 6), status="PENDING")
    assert _found(sessions, q="ab 12345") == [one]
    assert _found(sessions, q="RX1234567") == [one]
    assert _found(sessions, q=two.lower()) == [two]
    assert _found(sessions, cnie="AB12345") == [one]
    assert _found(sessions, passport_number="rx1234567") == [one]
    assert _found(sessions, q="Tazi", birth_date=dt.date(1990, 5, 6)) == [two]
    assert _found(sessions, q="Tazi Karim", status="pending") == [two]
    assert _found(sessions, q="Tazi", cnie="AB12345", birth_date=dt.date(1990, 5, 6)) == []


def test_an_agent_finds_only_their_posts_citizens(sessions):
    ours = _register(sessions, "Said", "Kettani", "سعيد", "الكتاني", cnie="BE111111")
    theirs = _register(sessions, "Said", "Kettani", "سعيد", "الكتاني", post=MADRID, cnie="BE222222")
    assert _found(sessions, q="Said Kettani") == [ours, theirs]
    assert _found(sessions, PARIS_AGENT, q="Said Kettani") == [ours]
    assert _found(sessions, PARIS_AGENT, q="سعيد الكتاني") == [ours]
    assert _found(sessions, PARIS_AGENT, q="BE222222") == []
    assert _found(sessions, PARIS_AGENT, cnie="BE222222") == []
    assert theirs not in _found(sessions, PARIS_AGENT, limit=200)
    with pytest.raises(Forbidden):
        _found(sessions, PARIS_AGENT, post_code=MADRID)
    assert _found(sessions, q="Kettani", post_code=MADRID) == [theirs]


def test_pages_follow_each_other_by_cursor_and_a_forged_cursor_is_refused(sessions):
    ids = [_register(sessions, f"Hamza{i}", "Berrada", "حمزة", "برادة") for i in range(5)]
    seen, cursor = [], None
    with sessions() as session:
        for _ in range(3):
            page = search(session, ADMIN, q="berrada", limit=2, cursor=cursor)
            seen += [c.registration_id for c in page.citizens]
            cursor = page.next_cursor
        assert cursor is None and seen == ids
        first = search(session, ADMIN, q="berrada", limit=2)
        with pytest.raises(SearchRefused, match="^cursor: belongs to another search"):
            search(session, ADMIN, q="hamza", limit=2, cursor=first.next_cursor)
        with pytest.raises(SearchRefused, match="^cursor: belongs to another search"):
            search(session, PARIS_AGENT, q="berrada", limit=2, cursor=first.next_cursor)
        for forged in ("1", "MTIz", "%%%", "x" * 65, "MS4wMDAwMDAwMDAwMDAwMDAw", "\x00", "ＭＱ"):
            with pytest.raises(SearchRefused, match="^cursor: "):
                search(session, ADMIN, q="berrada", cursor=forged)
        with pytest.raises(SearchRefused, match="^limit: "):
            search(session, ADMIN, q="berrada", limit=0)


def test_reindex_follows_a_corrected_name_and_a_transfer(sessions):
    registration_id = _register(sessions, "Driss", "Lahlou", "إدريس", "لحلو")
    with sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        citizen.family_name_latin, citizen.family_name_arabic, citizen.post_code = "Lahlali", "لحلالي", MADRID
        citizen_search.reindex(session, citizen)
    assert _found(sessions, q="Driss Lahlou") == []
    assert _found(sessions, q="Driss Lahlali") == [registration_id]
    assert _found(sessions, q="ادريس لحلالي", post_code=MADRID) == [registration_id]
    assert _found(sessions, PARIS_AGENT, q="Driss") == []


@pytest.mark.empty_database
def test_the_migration_indexes_the_citizens_stored_before_it(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            command.upgrade(alembic_config(connection), "0016")
            connection.execute(insert(Post.__table__).values(code=PARIS, name="Paris", kind="CONSULATE", country="FR",
                                                             city="Paris", jurisdiction="", active=True))
            connection.execute(insert(Citizen.__table__), [
                {"registration_id": f"MRE-000000{i}", "given_name_latin": "Youssef", "family_name_latin": name,
                 "given_name_arabic": "يوسف", "family_name_arabic": arabic, "birth_date": dt.date(1980, 1, 1),
                 "birth_place": "", "sex": "M", "country": "FR", "city": "Paris", "address_lines": "",
                 "post_code": PARIS, "registered_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                 "status": "ACTIVE"}
                for i, (name, arabic) in enumerate([("El Amrani", "العمراني"), ("Tazi", "تازي")], start=1)])
            connection.commit()
            command.upgrade(alembic_config(connection), "head")
            connection.commit()
            words = connection.execute(select(CitizenNameToken.citizen_id, CitizenNameToken.token,
                                              CitizenNameToken.post_code).order_by(CitizenNameToken.citizen_id,
                                                                                   CitizenNameToken.token)).all()
        assert [(w.token, w.post_code) for w in words if w.citizen_id == 1] == [
            ("amrani", PARIS), ("el", PARIS), ("youssef", PARIS), ("العمراني", PARIS), ("يوسف", PARIS)]
        assert {w.token for w in words if w.citizen_id == 2} == {"youssef", "tazi", "يوسف", "تازي"}
        with make_sessionmaker(engine)() as session:
            assert [c.registration_id for c in search(session, ADMIN, q="عمراني يوسف").citizens] == []
            assert [c.registration_id for c in search(session, ADMIN, q="العمراني يوسف").citizens] == ["MRE-0000001"]
    finally:
        engine.dispose()


def test_a_prefix_of_many_words_is_read_as_a_range_and_an_unknown_word_finds_nobody(sessions, monkeypatch):
    ids = [_register(sessions, "Rim", family, "ريم", arabic)
           for family, arabic in (("Benzakour", "بنزاكور"), ("Benzekri", "بنزكري"), ("Benzina", "بنزينة"))]
    with sessions() as session:
        assert citizen_search.words_beginning(session, "benz") == ["benzakour", "benzekri", "benzina"]
    monkeypatch.setattr(citizen_search, "MAX_EXPANSION", 2)
    assert _found(sessions, q="benz rim") == ids
    assert _found(sessions, q="benz rim", birth_date=dt.date(1985, 3, 14)) == ids
    assert _found(sessions, q="Benzouine Rim") == []

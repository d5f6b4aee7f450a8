"""The message search API over a large history: a database preloaded in bulk (bench/preload.py) with
12,000 messages (more than the search counts exactly), searched through the running hub on SQLite and on PostgreSQL.

What a user relies on: each filter returns exactly the messages that match, newest first, with the
right total; walking the pages with `next_before` (or with `offset`) visits every match once; the
preloaded history passes `hub evidence verify`; and each query the search runs is answered from an
index (EXPLAIN), which is what keeps it fast at a million rows. No timing is asserted here: the
benchmark (`python -m bench --preload N`) measures it.

The tests only read: they share the module's database (preloaded once per database kind) and hub."""
from __future__ import annotations

import datetime as dt
import sys

import pytest
from sqlalchemy import text

from hub.api.messages import COUNT_LIMIT, search_statements
from hub.store.db import make_engine
from hub.settings import PROJECT_ROOT

if str(PROJECT_ROOT) not in sys.path:  # `bench` is not an installed package: it is run from the project root
    sys.path.insert(0, str(PROJECT_ROOT))
from bench import preload  # noqa: E402
from hub.evidence import bulk  # noqa: E402

pytestmark = [pytest.mark.both_databases, pytest.mark.shared_hub]  # storage is the subject

COUNT = 12_000  # more than COUNT_LIMIT: totals beyond it are "at least", unless exact_total is asked
_preloads: dict[str, dict] = {}  # database URL -> what preload.preload did there


@pytest.fixture
def preloaded(database_url, pki_dir):
    """The history, stored once in the module's database before its hub starts (request it before `client`)."""
    if database_url not in _preloads:
        done = _preloads[database_url] = preload.preload(database_url, COUNT, pki_dir, tag="T")
        print(f"preloaded {done['messages']} messages, {done['events']} events in {done['seconds']} s")
    return _preloads[database_url]


def expected(predicate) -> list[str]:
    """Message ids of the preload's rows matching `predicate(index)`, newest first."""
    generator = bulk.Generator.__new__(bulk.Generator)
    generator.tag = "T"
    return [generator.message_id(i) for i in range(COUNT - 1, -1, -1) if predicate(i)]


def kind(i: int) -> bulk.Kind:
    return bulk.KINDS[i % 10]


def dead(i: int) -> bool:
    return i % bulk.DEAD_EVERY == bulk.DEAD_EVERY - 1


FILTERS = {
    "newest": ({}, lambda i: True),
    "state DEAD": ({"state": "dead"}, dead),
    "state DELIVERED": ({"state": "DELIVERED"}, lambda i: not dead(i)),
    "type": ({"type": "CivilStatusExtractRequest"}, lambda i: kind(i).type == "CivilStatusExtractRequest"),
    "partner NARSA": ({"partner": "NARSA"}, lambda i: "NARSA" in (kind(i).sender, kind(i).recipient)),
    "partner JUSTICE": ({"partner": "JUSTICE"}, lambda i: "JUSTICE" in (kind(i).sender, kind(i).recipient)),
    "partner SANTE (none)": ({"partner": "SANTE"}, lambda i: False),
    "case": ({"correlation_id": "LIC-PT-00000123"}, lambda i: i // 10 == 123),
    "state and type": ({"state": "DEAD", "type": "JudicialServiceRequest"},
                       lambda i: dead(i) and kind(i).type == "JudicialServiceRequest"),
    "partner and state": ({"partner": "REGISTRY", "state": "DEAD"}, dead),
    "sender": ({"sender": "NARSA"}, lambda i: kind(i).sender == "NARSA"),
    "sender and state": ({"sender": "JUSTICE", "state": "DEAD"}, lambda i: kind(i).sender == "JUSTICE" and dead(i)),
    "message id": ({"message_id": "JUSTICE-JSR-PT-00004569"}, lambda i: i == 4569),
}


def test_each_filter_returns_the_matching_messages_newest_first(preloaded, client):
    assert COUNT > COUNT_LIMIT  # else the "at least COUNT_LIMIT" answer goes untested
    for name, (params, predicate) in FILTERS.items():
        want = expected(predicate)
        page = client.get("/api/v1/messages", params={**params, "limit": 100})
        assert page.status_code == 200, page.text
        body = page.json()
        got = [item["id"] for item in body["items"]]
        print(f"{name}: total {body['total']}{'' if body['total_exact'] else '+'} of {len(want)}, first page {len(got)}")
        # exact up to COUNT_LIMIT; beyond it "at least COUNT_LIMIT", unless exact_total is asked for
        assert (body["total"], body["total_exact"]) == ((len(want), True) if len(want) <= COUNT_LIMIT else
                                                        (COUNT_LIMIT, False)), name
        if len(want) > COUNT_LIMIT:
            exact = client.get("/api/v1/messages", params={**params, "limit": 1, "exact_total": "true"}).json()
            assert (exact["total"], exact["total_exact"]) == (len(want), True), name
        assert got == want[:100], name
        assert (body["next_before"] is None) == (len(want) <= 100), name
    item = client.get("/api/v1/messages", params={"correlation_id": "LIC-PT-00000123", "limit": 1}).json()["items"][0]
    assert item["sender"] == "JUSTICE" and item["state"] == "DELIVERED" and item["type"] == "JudicialServiceRequest"
    answer = client.get(f"/api/v1/messages/{expected(lambda i: i == 1236)[0]}").json()
    assert answer["in_reply_to"] == expected(lambda i: i == 1230)[0]
    assert [e["event"] for e in answer["timeline"]] == ["RECEIVED", "VALIDATED", "VERIFIED", "CORRELATED", "ACCEPTED",
                                                        "QUEUED", "SENT", "PARTNER_RECEIPT"]


def test_pages_by_cursor_and_by_offset_visit_every_match_once(preloaded, client):
    for params, predicate in (({"partner": "JUSTICE"}, FILTERS["partner JUSTICE"][1]),
                              ({"type": "LicenceAuthenticationResult"}, lambda i: kind(i).code == "LICR")):
        want = expected(predicate)
        seen, before, pages = [], None, 0
        while True:
            body = client.get("/api/v1/messages", params={**params, "limit": 500,
                                                          **({"before": before} if before else {})}).json()
            seen += [item["id"] for item in body["items"]]
            pages += 1
            assert body["total"] == len(want) and body["total_exact"]
            before = body["next_before"]
            if before is None:
                break
        print(f"{params}: {len(seen)} messages in {pages} pages by cursor")
        assert seen == want
        by_offset = [item["id"] for offset in (0, 500, 1000)
                     for item in client.get("/api/v1/messages", params={**params, "limit": 500, "offset": offset})
                     .json()["items"]]
        assert by_offset == want[:1500]
        # a cursor and an offset together: the offset counts from the cursor
        cursor = client.get("/api/v1/messages", params={**params, "limit": 10}).json()["next_before"]
        after = client.get("/api/v1/messages", params={**params, "limit": 5, "offset": 5, "before": cursor}).json()
        assert [item["id"] for item in after["items"]] == want[15:20]


def test_the_preloaded_history_passes_evidence_verification(preloaded, settings):
    from hub.evidence.chains import verify_chains
    from hub.engine import Hub
    hub = Hub(settings)
    try:
        report = verify_chains(hub)
    finally:
        hub.close()
    print(report)
    assert report.ok, str(report)
    assert report.chains["timeline"].entries == preloaded["events"]
    # received bytes, receipt, bytes sent and the partner's answer; a dead message was never sent
    assert report.chains["timeline"].digests_checked == 4 * COUNT - 2 * len(expected(dead))


def test_a_date_range_returns_the_messages_received_in_it(preloaded, client):
    """The preload spreads reception times evenly, in id order: the range from message 5000's time (included)
    to message 5100's (excluded) is exactly those hundred, found through the id range the probe gives."""
    at = {i: client.get(f"/api/v1/messages/{expected(lambda j: j == i)[0]}").json()["received_at"]
          for i in (5000, 5100)}
    body = client.get("/api/v1/messages", params={"received_from": at[5000], "received_to": at[5100],
                                                  "limit": 500}).json()
    assert [item["id"] for item in body["items"]] == expected(lambda i: 5000 <= i < 5100)
    assert (body["total"], body["total_exact"]) == (100, True)
    dead_only = client.get("/api/v1/messages", params={"received_from": at[5000], "received_to": at[5100],
                                                       "state": "DEAD", "partner": "NARSA"}).json()
    assert [item["id"] for item in dead_only["items"]] == expected(
        lambda i: 5000 <= i < 5100 and dead(i) and "NARSA" in (kind(i).sender, kind(i).recipient))
    edges = client.get("/api/v1/messages", params={"received_from": "0001-01-01T00:00:00+14:00",
                                                   "received_to": "9999-12-31T23:59:59Z", "limit": 1, "exact_total": "true"})
    assert edges.status_code == 200 and edges.json()["total"] == COUNT  # the calendar's edges bound nothing
    later = client.get("/api/v1/messages", params={"received_from": "2999-01-01T00:00:00Z"}).json()
    assert (later["total"], later["items"]) == (0, [])


def test_every_search_query_is_answered_from_an_index(preloaded, database_url):
    engine = make_engine(database_url)
    sqlite = engine.dialect.name == "sqlite"
    checked = 0
    with engine.connect() as connection:
        if not sqlite:
            connection.execute(text("ANALYZE messages"))
        a_day = {"received_from": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                 "received_to": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), "id_range": (5000, 5100)}
        ranged = {"date range": ({**a_day}, lambda i: False),
                  "date range and state": ({**a_day, "state": "DEAD"}, lambda i: False),
                  "date range and partner": ({**a_day, "partner": "NARSA"}, lambda i: False),
                  # a newer page's count covers everything newer than the page: only the page itself is checked
                  "newer page, state": ({"state": "DEAD", "after": 5000}, lambda i: True),
                  "newer page, partner": ({"partner": "NARSA", "after": 5000}, lambda i: True)}
        for name, (params, predicate) in {**FILTERS, **ranged}.items():
            counts, page = search_statements(**params, limit=50, before=10_000, count_limit=COUNT_LIMIT)
            # counting most of the table, PostgreSQL rightly prefers reading the table: only a count of a
            # selective filter must use an index; the page (newest first, LIMIT) always must
            selective = len(expected(predicate)) < COUNT // 10
            for statement in (counts if selective else []) + [page]:
                sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                plan = "\n".join(str(row[-1]) for row in connection.execute(
                    text(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql)))
                checked += 1
                if sqlite:
                    # every access to messages is an index search, or the primary key's own order (no filter)
                    scans = [line for line in plan.splitlines() if line.startswith("SCAN messages")]
                    assert all("INDEX" in line for line in scans) or not params, (name, plan)
                    assert "USING TEMP B-TREE FOR ORDER BY" not in plan, (name, plan)
                else:
                    assert "Index" in plan and "Seq Scan on messages" not in plan, (name, plan)
    engine.dispose()
    print(f"{checked} search statements explained on {engine.dialect.name}: each uses an index")

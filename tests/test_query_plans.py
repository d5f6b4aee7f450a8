"""The lookups made for every message are answered from an index on a new SQLite database.

A new hub's SQLite database has no statistics (nothing runs ANALYZE on it), so SQLite's planner picks
an index by the shape of the query alone. A lookup that starts from the wrong table reads a range
that grows with the history. The hub slows down as it ages, with no error anywhere.

These tests use SQLite. PostgreSQL has no statistics either until something runs ANALYZE (autovacuum, when
it is on): tests/test_outbox_claim.py checks the claim there without them, and tests/test_search_at_scale.py
the search's statements on both databases, after ANALYZE."""
from __future__ import annotations

import pytest

from hub.delivery import outbox
from hub.intake.accept import CORRELATION_QUERY
from hub.store.db import make_engine

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # also with HUB_TEST_DATABASES=both


def _plan(database_url: str, statement) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            sql = str(statement.compile(dialect=engine.dialect))
            return [str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql,
                                                                        tuple([1] * sql.count("?")))]
    finally:
        engine.dispose()


def test_an_answer_finds_the_message_it_answers_from_its_id(database_url):
    """Not from every delivery ever made to the partner: written as a join, it did, and an answer cost
    milliseconds more for each thousand messages the partner had been sent."""
    plan = _plan(database_url, CORRELATION_QUERY)
    assert plan[0].startswith("SEARCH messages USING") and "(message_id=?)" in plan[0], plan
    assert any("deliveries" in line and "partner=? AND message_pk=?" in line for line in plan), plan
    assert not any(line.startswith("SCAN") for line in plan), plan


def test_the_claim_reads_only_the_due_deliveries(database_url):
    for statement in (outbox._CLAIMABLE, outbox._ANY_DUE):
        plan = _plan(database_url, statement)
        assert plan == ["SEARCH deliveries USING INDEX ix_deliveries_due (state=? AND next_attempt_at<?)"], plan


def test_a_claim_for_some_partners_looks_each_up_on_its_own(database_url):
    """Not by reading the due index past the deliveries of the partners left out (at their in-flight limit, their
    circuit open): a partner down for a day made every claim for the others read its whole backlog."""
    for statement in (outbox._claimable_of(3), outbox._any_due_of(3)):
        plan = _plan(database_url, statement)
        per_partner = [line for line in plan if "ix_deliveries_partner_due (partner=? AND state=? AND "
                                                "next_attempt_at<?)" in line]
        assert len(per_partner) == 3, plan
        assert not any(line.startswith("SCAN deliveries") or "ix_deliveries_due" in line for line in plan), plan

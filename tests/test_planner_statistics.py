"""The leader keeps PostgreSQL's planner statistics as autovacuum would, on or off (hub/store/statistics.py).

What a hub relies on: a statement prepared while its tables were empty (a new hub's first minute) does not keep
the plan it got then. A delivery's outcome, found through the index of due deliveries rather than by its id,
read the whole backlog for every outcome, and went on doing so: nothing analysed the table where autovacuum is
off, so nothing made PostgreSQL plan the statement again."""
from __future__ import annotations

import time

import pytest

from hub.service import HubService
from hub.store import statistics
from hub.store.db import make_engine

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

BACKLOG = ("INSERT INTO messages (message_id, sender, recipient, type, correlation_id, state, digest, receipt, "
           "received_at, updated_at) SELECT 'B-' || n, 'REGISTRY', 'NARSA', 'T', 'B-' || n, 'ACCEPTED', "
           "repeat('0', 64), 'r', now(), now() FROM generate_series(1, 2000) AS n; "
           "INSERT INTO deliveries (message_pk, partner, state, attempts, next_attempt_at) "
           "SELECT id, 'NARSA', 'PENDING', 1, now() FROM messages")


def _counted(engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s",
                                          (table,)).scalar()


@on_postgresql
def test_a_plan_prepared_on_an_empty_table_follows_it_once_the_leader_analyses_it(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as prepared:
            prepared.exec_driver_sql("SET plan_cache_mode = force_generic_plan")  # as psycopg's prepared statements
            prepared.exec_driver_sql(
                "PREPARE outcome(bigint, int, text) AS UPDATE deliveries SET state = 'DELIVERED' WHERE id = $1 "
                "AND attempts = $2 AND state = $3 AND sent_bytes IS NULL AND sent_path IS NULL")

            def plan() -> str:  # a transaction each time, as the hub's: a new one takes in the analysis
                explained = prepared.exec_driver_sql("EXPLAIN EXECUTE outcome(1, 1, 'PENDING')")
                lines = "\n".join(row[0] for row in explained)
                prepared.commit()
                return lines

            assert "ix_deliveries_due" in plan()  # planned on the empty table: the due index came first
            assert statistics.refresh(engine) == []  # nothing changed yet: nothing to analyse
            with engine.begin() as writer:
                writer.exec_driver_sql(BACKLOG)
            deadline = time.monotonic() + 15  # the backends' counts reach the statistics views within seconds
            while _counted(engine, "deliveries") < 2000 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "ix_deliveries_due" in plan()  # the rows alone change nothing: the plan is kept

            assert statistics.refresh(engine) == ["deliveries", "messages"]
            assert "Index Cond: (id = $1)" in plan() and "ix_deliveries_due" not in plan(), plan()
            assert statistics.refresh(engine) == []  # analysed: nothing is done twice
    finally:
        engine.dispose()


@on_postgresql
def test_nothing_is_analysed_below_autovacuums_threshold(database_url):
    """50 rows changed, and 10 % of the table's rows as last analysed, as autovacuum_analyze_threshold and
    autovacuum_analyze_scale_factor: a table analysed at 2,000 rows waits for 251 more changes."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as writer:
            writer.exec_driver_sql(BACKLOG)
        wait = time.monotonic() + 15
        while "deliveries" not in statistics.stale_tables(engine) and time.monotonic() < wait:
            time.sleep(0.2)
        assert "deliveries" in statistics.refresh(engine)
        for changed, due in ((240, False), (260, True)):  # rows changed since the analysis, in all
            with engine.begin() as writer:
                writer.exec_driver_sql("UPDATE deliveries SET attempts = attempts + 1 WHERE id IN (SELECT id FROM "
                                       f"deliveries ORDER BY id LIMIT {changed - _counted(engine, 'deliveries')})")
            wait = time.monotonic() + 15
            while _counted(engine, "deliveries") < changed and time.monotonic() < wait:
                time.sleep(0.2)
            assert ("deliveries" in statistics.stale_tables(engine)) is due, changed
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_leader_keeps_the_statistics_on_postgresql_only(settings):
    """A job of the leader's on PostgreSQL (hub/service.py); SQLite's planner needs none (tests/test_query_plans.py)."""
    service = HubService(settings, apps=())
    try:
        jobs = {job.id: job for job in service.jobs}
        if settings.database_url.startswith("sqlite"):
            assert "planner-statistics" not in jobs and service.refresh_statistics() == []
            return
        assert jobs["planner-statistics"].every_seconds == statistics.EVERY_SECONDS
        with service.hub.engine.begin() as writer:
            writer.exec_driver_sql(BACKLOG)
        deadline = time.monotonic() + 15
        while _counted(service.hub.engine, "deliveries") < 2000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {"deliveries", "messages"} <= set(service.refresh_statistics())
        assert "deliveries" not in service.refresh_statistics()
    finally:
        service.hub.close()

"""The outbox's claim limited to the partners that can take work (hub/delivery/outbox.py), on both databases.

The delivery workers leave out the partners at their in-flight limit or with their circuit open. What they
rely on: only the named partners' deliveries are claimed, due ones only, in due order, never one another
worker holds a lease on, up to the limit; `any_due` answers the same question without claiming. The statements
look each partner up on its own (tests/test_query_plans.py): a partner's backlog does not slow the others."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import text

from conftest import wait_for

from hub.delivery.outbox import _claimable_of, _of, any_due, claim
from hub.store.db import make_engine, utcnow
from hub.store.models import Delivery, Message

pytestmark = pytest.mark.both_databases  # storage is the subject


@pytest.fixture
def outbox(database_url):
    """A backlog of 50 due deliveries to DOWN (left out), and for UP and OTHER: due ones a second apart, one
    leased by another worker, one due only in an hour."""
    engine = make_engine(database_url)
    now = utcnow()
    rows = [("DOWN", now - dt.timedelta(seconds=100 - i), None) for i in range(50)]
    rows += [("UP", now - dt.timedelta(seconds=30), None), ("OTHER", now - dt.timedelta(seconds=20), None),
             ("UP", now - dt.timedelta(seconds=10), None), ("OTHER", now - dt.timedelta(seconds=5), None),
             ("UP", now - dt.timedelta(seconds=40), now + dt.timedelta(seconds=60)),  # leased
             ("OTHER", now + dt.timedelta(hours=1), None)]                            # not due yet
    ids = {}
    with engine.begin() as connection:
        for n, (partner, due, lease) in enumerate(rows):
            message = connection.execute(Message.__table__.insert().returning(Message.id), {
                "message_id": f"M-{n}", "sender": "REGISTRY", "recipient": partner, "type": "T",
                "correlation_id": f"C-{n}", "state": "ACCEPTED", "digest": "0" * 64, "receipt": b"r",
                "received_at": now, "updated_at": now}).scalar_one()
            ids[n] = connection.execute(Delivery.__table__.insert().returning(Delivery.id), {
                "message_pk": message, "partner": partner, "state": "PENDING", "attempts": 0,
                "next_attempt_at": due, "lease_owner": "other" if lease else None,
                "lease_expires_at": lease}).scalar_one()
    yield engine, ids
    engine.dispose()


def test_a_claim_for_some_partners_takes_their_due_deliveries_first_due_first(outbox):
    engine, ids = outbox
    with engine.begin() as connection:
        claimed = claim(connection, owner="me", limit=3, lease_seconds=30, partners=["UP", "OTHER"])
    assert [(c.id, c.partner) for c in claimed] == [(ids[50], "UP"), (ids[51], "OTHER"), (ids[52], "UP")]
    with engine.begin() as connection:  # the rest: the last due one; the leased and the future ones stay
        again = claim(connection, owner="me", limit=10, lease_seconds=30, partners=["UP", "OTHER"])
    assert [c.id for c in again] == [ids[53]]
    with engine.connect() as connection:
        leases = dict(connection.execute(Delivery.__table__.select().with_only_columns(
            Delivery.id, Delivery.lease_owner).where(Delivery.partner.in_(["UP", "OTHER"]))).all())
    assert leases == {ids[50]: "me", ids[51]: "me", ids[52]: "me", ids[53]: "me", ids[54]: "other", ids[55]: None}


def test_a_partner_left_out_is_not_claimed_and_no_partner_claims_nothing(outbox):
    engine, ids = outbox
    with engine.begin() as connection:
        assert claim(connection, owner="me", limit=5, lease_seconds=30, partners=[]) == []
        only_down = claim(connection, owner="me", limit=5, lease_seconds=30, partners=["DOWN"])
    assert [c.id for c in only_down] == [ids[n] for n in range(5)]
    with engine.begin() as connection:  # every partner (None): the first due of them all, DOWN's backlog first
        every = claim(connection, owner="me", limit=2, lease_seconds=30)
    assert [c.id for c in every] == [ids[5], ids[6]]


def test_any_due_answers_for_the_partners_named(outbox):
    engine, _ = outbox
    with engine.connect() as connection:
        assert any_due(connection) and any_due(connection, partners=["UP"])
        assert any_due(connection, partners=["DOWN", "NOBODY"])
        assert not any_due(connection, partners=[]) and not any_due(connection, partners=["NOBODY"])
    with engine.begin() as connection:
        claim(connection, owner="me", limit=10, lease_seconds=30, partners=["OTHER"])
    with engine.connect() as connection:  # OTHER's due ones are leased now, its last is due in an hour
        assert not any_due(connection, partners=["OTHER"])


def test_a_claim_reads_no_more_of_each_partner_than_it_is_given(outbox):
    """The workers give each partner the most its free slots can take: a backlog of fifty is read three at a
    time, not a window's worth offered one by one to be refused."""
    engine, ids = outbox
    offered = []

    def take(partner, delivery_id):
        offered.append((partner, delivery_id))
        return True

    with engine.begin() as connection:
        claimed = claim(connection, owner="me", limit=40, lease_seconds=30, partners={"DOWN": 3, "UP": 1}, take=take)
    assert offered == [("DOWN", ids[0]), ("DOWN", ids[1]), ("DOWN", ids[2]), ("UP", ids[50])]
    assert [c.id for c in claimed] == [ids[0], ids[1], ids[2], ids[50]]
    with engine.begin() as connection:  # the overall limit still holds, in due order
        claimed = claim(connection, owner="me", limit=2, lease_seconds=30, partners={"DOWN": 5, "UP": 5})
    assert [c.id for c in claimed] == [ids[3], ids[4]]


def test_a_delivery_leased_by_a_claim_committed_meanwhile_is_not_claimed_again(outbox, database_url):
    """PostgreSQL: a claim reads the due deliveries as of its snapshot, then locks them. When another claim leases
    one and commits in between, the lock is free again (SKIP LOCKED skips only rows locked now): the row must then
    be seen as leased, or it is claimed, and sent, a second time. The window is made certain here by the same
    statement waiting for the row's lock instead of skipping it, while the other claim commits."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises its claims (BEGIN IMMEDIATE): no claim reads while another writes")
    engine, ids = outbox
    first, second = ids[50], ids[52]  # UP's two due deliveries, in due order
    waiting = _claimable_of(1, lock="wait")  # the claim's statement, waiting for locks instead of skipping
    found: list[int] = []
    with engine.connect() as other:
        other.begin()
        other.execute(Delivery.__table__.update().where(Delivery.id == first).values(
            lease_owner="other", lease_expires_at=utcnow() + dt.timedelta(seconds=60)))

        def look() -> None:
            with engine.begin() as connection:
                found.extend(row.id for row in connection.execute(
                    waiting, {"now": utcnow(), "limit": 1, **_of({"UP": 2}, 2)}))

        def waits_for_the_row() -> bool:  # a transaction of its own each time: pg_stat_activity is read once in one
            with engine.connect() as monitor:
                return monitor.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()")) == 1

        looking = threading.Thread(target=look)
        looking.start()
        wait_for(waits_for_the_row, 10, what="the claim to wait for the row the other claim holds")
        other.commit()
        looking.join(10)
    assert found == [second]


def test_a_claim_reads_only_the_rows_it_locks_on_postgresql_without_statistics(outbox, database_url):
    """A new schema has no statistics until something runs ANALYZE (autovacuum, when it is on). Locked by an
    outer statement re-reading the table, PostgreSQL's planner then drove the claim from the due index through
    every delivery waiting, the looked-up partners' lookups run again for each: 10 ms a claim behind a backlog
    of 4,000. Each partner's lookup must read its own index from the first due entry, and stop."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's plans: tests/test_query_plans.py")
    engine, _ = outbox
    with engine.begin() as connection:  # DOWN's backlog grows to 5,000 (the fixture's 50 and these)
        connection.execute(text(
            "INSERT INTO messages (message_id, sender, recipient, type, correlation_id, state, digest, receipt, "
            "received_at, updated_at) SELECT 'B-' || n, 'REGISTRY', 'DOWN', 'T', 'B-' || n, 'ACCEPTED', "
            "repeat('0', 64), 'r', now(), now() FROM generate_series(1, 4950) AS n"))
        connection.execute(text(
            "INSERT INTO deliveries (message_pk, partner, state, attempts, next_attempt_at) "
            "SELECT id, 'DOWN', 'PENDING', 0, now() - interval '1 minute' FROM messages WHERE message_id LIKE 'B-%'"))
        assert connection.scalar(text("SELECT last_analyze IS NULL AND last_autoanalyze IS NULL "
                                      "FROM pg_stat_user_tables WHERE relname = 'deliveries'"))
    compiled = _claimable_of(2).compile(dialect=engine.dialect)
    parameters = compiled.construct_params({"now": utcnow(), "limit": 4, **_of({"DOWN": 3, "UP": 3}, 4)})
    with engine.connect() as connection:
        [[plan]] = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), parameters).one()
        connection.rollback()
    scans = []

    def walk(node):
        if node.get("Relation Name") == "deliveries":
            scans.append(node)
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    assert [(scan["Node Type"], scan.get("Index Name")) for scan in scans] == [
        ("Index Scan", "ix_deliveries_partner_due")] * 2, plan
    assert sum(scan["Actual Rows"] * scan["Actual Loops"] for scan in scans) <= 3 + 2, plan  # DOWN's 3, UP's 2 due

"""The hub's pooled PostgreSQL connections (hub/store/db.py).

Connections that only read (`read_only`: token checks, the dispatcher's look for due work, the console's
pages) run each statement on its own, with no transaction left to roll back. What a writer relies on: a read on
a pooled connection leaves the statements psycopg prepared on it in place (a ROLLBACK makes psycopg forget them
all, and the next writer parsed and planned its statements again), and a read sees what was committed before
it, as it did in a READ COMMITTED transaction.

A connection idle in the pool for a while is pinged before it is handed out, and replaced if the database no
longer answers on it; one used a moment ago is handed out without that round trip."""
from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import select, text

from hub.store import db
from hub.store.db import make_engine, make_read_sessionmaker, read_only
from hub.store.models import Delivery

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def engine(database_url):
    made = make_engine(database_url)
    yield made
    made.dispose()


def _prepared(connection) -> int:
    return connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one()


def _backend(connection) -> int:
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def test_a_read_leaves_the_statements_prepared_on_its_connection(engine):
    # one thread using the pool in turn: every checkout below is the same connection
    with engine.begin() as connection:
        for _ in range(6):  # psycopg prepares a statement at its fifth execution
            connection.execute(select(Delivery.id).where(Delivery.id == 0)).all()
        prepared = _prepared(connection)
        backend = _backend(connection)
    assert prepared >= 1
    with read_only(engine).connect() as connection:
        assert _backend(connection) == backend
        connection.execute(select(Delivery.id).where(Delivery.id == 0)).all()
        assert connection.exec_driver_sql("SELECT txid_current_if_assigned()").scalar_one() is None
    with engine.begin() as connection:
        assert _backend(connection) == backend
        assert _prepared(connection) == prepared


def test_a_read_runs_outside_any_transaction_and_sees_what_was_committed_before_each_statement(engine):
    with read_only(engine).connect() as reader:
        assert reader.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 0
        with engine.begin() as writer:
            writer.execute(text("INSERT INTO messages (message_id, sender, recipient, type, correlation_id, state, "
                                "digest, receipt, received_at, updated_at) VALUES ('M-1', 'REGISTRY', 'DGSN', 'T', "
                                "'C-1', 'ACCEPTED', :digest, 'r', now(), now())"), {"digest": "0" * 64})
        assert reader.execute(text("SELECT count(*) FROM messages")).scalar_one() == 1
        assert reader.exec_driver_sql("SELECT now() = statement_timestamp()").scalar_one() is True
        assert reader.connection.dbapi_connection.info.transaction_status == 0  # IDLE: nothing to end
    with engine.begin() as connection:  # the writer's connection is back in a transaction of its own
        connection.exec_driver_sql("SELECT pg_sleep(0.01)")
        assert connection.exec_driver_sql("SELECT now() = statement_timestamp()").scalar_one() is False


def test_a_read_that_streams_its_rows_through_a_server_side_cursor_has_its_transaction(engine):
    with make_read_sessionmaker(engine, transaction=True)() as session:  # hub.streamed_reads
        rows = session.execute(select(Delivery.id).execution_options(yield_per=10)).all()
        assert rows == []
        assert session.connection().connection.dbapi_connection.info.transaction_status != 0  # in a transaction


def test_a_connection_the_database_ended_while_it_was_idle_is_replaced_before_it_is_handed_out(
        engine, database_url, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.05)
    with engine.connect() as connection:
        ended = _backend(connection)
    with psycopg.connect(database_url, autocommit=True) as admin:  # a restart, a failover, an administrator
        assert admin.execute("SELECT pg_terminate_backend(%s)", (ended,)).fetchone() == (True,)
    time.sleep(0.1)
    with engine.begin() as connection:  # no error: the pool noticed and connected again
        assert _backend(connection) != ended
        assert connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 0


def test_only_a_connection_idle_for_a_while_is_pinged(engine, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.3)
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    for _ in range(5):  # back to back: each checkout gets the connection returned a moment ago
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT 1")
    assert pings == []
    time.sleep(0.4)
    with engine.begin() as connection:
        connection.exec_driver_sql("SELECT 1")
    assert pings == [1]

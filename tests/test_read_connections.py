"""Connections that only read (hub/store/db.py `read_only`: token checks, the dispatcher's look for due work,
the console's pages) on PostgreSQL: each statement on its own, no transaction left to roll back.

What a writer relies on: a read on a pooled connection leaves the statements psycopg prepared on it in place
(a ROLLBACK makes psycopg forget them all, and the next writer parsed and planned its statements again), and a
read sees what was committed before it, as it did in a READ COMMITTED transaction."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from hub.store.db import make_engine, read_only
from hub.store.models import Delivery

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def engine(database_url):
    made = make_engine(database_url)
    yield made
    made.dispose()


def _prepared(connection) -> int:
    return connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one()


def test_a_read_leaves_the_statements_prepared_on_its_connection(engine):
    # one thread using the pool in turn: every checkout below is the same connection
    with engine.begin() as connection:
        for _ in range(6):  # psycopg prepares a statement at its fifth execution
            connection.execute(select(Delivery.id).where(Delivery.id == 0)).all()
        prepared = _prepared(connection)
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    assert prepared >= 1
    with read_only(engine).connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == backend
        connection.execute(select(Delivery.id).where(Delivery.id == 0)).all()
        assert connection.exec_driver_sql("SELECT txid_current_if_assigned()").scalar_one() is None
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == backend
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

"""hub/store/row_inserts.py: rows handed to the driver read back exactly as SQLAlchemy's own inserts would
write them, in statements within the parameter limit, their RETURNING rows all returned."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.exc import IntegrityError

from hub.store import row_inserts
from hub.store.db import make_engine
from hub.store.models import Message, MessageState
from hub.store.row_inserts import RowInsert

pytestmark = pytest.mark.both_databases

COLUMNS = ("message_id", "sender", "recipient", "type", "correlation_id", "in_reply_to", "state", "digest",
           "received_bytes", "canonical_bytes", "receipt", "received_at", "updated_at")
PARIS = dt.timezone(dt.timedelta(hours=1))


def _values(n: int) -> dict:
    at = dt.datetime(2026, 12, 5, 10, 0, n % 60, 123456, tzinfo=PARIS)  # not UTC: stored as UTC all the same
    return {"message_id": f"ROWS-{n:05d}", "sender": "REGISTRY", "recipient": "NARSA", "type": "T",
            "correlation_id": f"C-{n}", "in_reply_to": None if n % 2 else f"R-{n}", "state": MessageState.ACCEPTED,
            "digest": "d" * 64, "received_bytes": bytes([n % 256, 0, 255]) * 10, "canonical_bytes": None,
            "receipt": b"<Receipt/>", "received_at": at, "updated_at": at}


def _stored(engine, prefix: str) -> list[tuple]:
    """The rows as the database holds them (no SQLAlchemy type processing on the way back): on SQLite a
    datetime is text, which the claims and searches compare as text, so it must be written in one format."""
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT id, {', '.join(COLUMNS)} FROM messages WHERE message_id LIKE :prefix "
                                       "ORDER BY id"), {"prefix": prefix + "%"}).all()
    return [tuple(row) for row in rows]


def test_rows_read_back_as_sqlalchemy_writes_them(database_url):
    engine = make_engine(database_url)
    try:
        written = [_values(n) for n in range(5)]
        with engine.begin() as connection:
            returned = RowInsert(Message.__table__, COLUMNS, returning=("id", "message_id"))(
                connection, [tuple(row[c] for c in COLUMNS) for row in written])
            connection.execute(insert(Message.__table__), [row | {"message_id": "SA" + row["message_id"]}
                                                           for row in written])
        ours, theirs = _stored(engine, "ROWS-"), _stored(engine, "SAROWS-")
        assert [row[2:] for row in ours] == [row[2:] for row in theirs]  # all but the id and the message id
        with engine.connect() as connection:
            first = connection.execute(select(Message.received_at, Message.received_bytes)
                                       .where(Message.message_id == "ROWS-00003")).one()
        assert first == (dt.datetime(2026, 12, 5, 9, 0, 3, 123456, tzinfo=dt.timezone.utc), bytes([3, 0, 255]) * 10)
        assert sorted(message_id for _id, message_id in returned) == [f"ROWS-{n:05d}" for n in range(5)]
        with engine.connect() as connection:
            ids = dict(connection.execute(select(Message.message_id, Message.id)
                                          .where(Message.message_id.like("ROWS-%"))).all())
        assert {message_id: pk for pk, message_id in returned} == ids
    finally:
        engine.dispose()


def test_more_rows_than_one_statement_takes_are_split_and_all_returned(database_url, monkeypatch):
    monkeypatch.setattr(row_inserts, "MAX_PARAMETERS", 3 * len(COLUMNS))  # three rows a statement
    engine = make_engine(database_url)
    statements = []
    try:
        event.listen(engine, "before_cursor_execute",  # rows a statement: ? on SQLite, $n on PostgreSQL
                     lambda _c, _cursor, sql, *_: statements.append(sql.count("(?") + sql.count("($")))
        with engine.begin() as connection:
            returned = RowInsert(Message.__table__, COLUMNS, returning=("message_id",))(
                connection, [tuple(_values(n)[c] for c in COLUMNS) for n in range(100, 108)])
        assert [s for s in statements if s] == [3, 3, 2]
        assert sorted(returned) == [(f"ROWS-{n:05d}",) for n in range(100, 108)]
        assert len(_stored(engine, "ROWS-0010")) == 8
    finally:
        engine.dispose()


def test_a_column_the_table_lacks_is_refused_when_the_statement_is_made():
    with pytest.raises(KeyError):
        RowInsert(Message.__table__, ("message_id", "no_such_column"))


def test_on_postgresql_the_connection_is_given_back_as_it_was_after_a_row_insert(database_url):
    """On PostgreSQL the statement runs on psycopg's raw cursor ($1, $2, ...): afterwards, and after one the
    database refused, the connection's other statements (SQLAlchemy's, with `%s`) run as before."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the raw cursor is psycopg's")
    import psycopg
    engine = make_engine(database_url)
    insert_one = RowInsert(Message.__table__, COLUMNS, returning=("message_id",))
    try:
        with engine.begin() as connection:
            assert insert_one(connection, [tuple(_values(200)[c] for c in COLUMNS)]) == [("ROWS-00200",)]
            driver = connection.connection.driver_connection
            assert driver.cursor_factory is psycopg.Cursor
            with pytest.raises(IntegrityError), connection.begin_nested():  # the same message twice
                insert_one(connection, [tuple(_values(200)[c] for c in COLUMNS)])
            assert driver.cursor_factory is psycopg.Cursor
            found = connection.scalar(select(Message.message_id).where(Message.message_id == "ROWS-00200"))
            assert found == "ROWS-00200"
    finally:
        engine.dispose()

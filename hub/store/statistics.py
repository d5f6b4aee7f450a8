"""The planner's statistics on PostgreSQL: the hub's tables analysed as they change, whether autovacuum runs or not.

PostgreSQL plans a statement from what ANALYZE last recorded of each table, and psycopg prepares a statement
once it has run five times on a connection: its plan, made then, is kept until the table is analysed again.
A new schema has no statistics at all. Its plans, made while the tables were nearly empty, read whatever index
came first: a delivery's outcome found its row through the index of due deliveries (state, next_attempt_at)
rather than by its id, reading the whole backlog for every outcome, and the evidence sealer joined every
message and delivery ever stored to each batch of events (measured with auto_explain: `docs/performance.md`).

Autovacuum analyses a table once the rows changed since its last analysis exceed 50 + 10 % of the table
(`autovacuum_analyze_threshold`, `autovacuum_analyze_scale_factor`), looking every `autovacuum_naptime` (a
minute), and never where it is turned off. The leader applies the same rule every few seconds to the tables of
the hub's own schema (`refresh`): a new hub's plans follow its tables from its first minute, and ANALYZE
invalidates the plans prepared from the old figures. Where autovacuum got there first, the table's count of
changes is back to zero and nothing is done twice. SQLite's planner needs none of this (tests/test_query_plans.py).
"""
from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from hub.errors import first_line

log = logging.getLogger("hub.store.statistics")

ANALYZE_THRESHOLD = 50      # rows changed, as autovacuum_analyze_threshold
ANALYZE_SCALE_FACTOR = 0.1  # of the table's rows, as autovacuum_analyze_scale_factor
EVERY_SECONDS = 5           # how often the leader looks

# The schema's tables the hub owns (ANALYZE is for a table's owner). Read from pg_class and the counting function
# rather than the view pg_stat_user_tables, which reads the figures of every table of the database: 3.5-5.7 ms a
# look where this takes 0.7.
_STALE = text("SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' "
              "AND relowner = current_user::regrole "
              "AND pg_stat_get_mod_since_analyze(oid) > :threshold + :scale * greatest(reltuples, 0) ORDER BY relname")


def stale_tables(engine: Engine) -> list[str]:
    """The hub's tables in its schema changed enough since their last analysis to be analysed again."""
    with engine.connect() as connection:
        return list(connection.scalars(_STALE, {"threshold": ANALYZE_THRESHOLD, "scale": ANALYZE_SCALE_FACTOR}))


def refresh(engine: Engine) -> list[str]:
    """ANALYZE each table of the hub's schema that autovacuum's rule says is due (nothing on SQLite); returns
    the tables analysed. A table that cannot be analysed (a lock timeout, the database away) is logged and left
    for the next run."""
    if engine.dialect.name != "postgresql":
        return []
    analysed = []
    for table in stale_tables(engine):
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql('ANALYZE "{}"'.format(table.replace('"', '""')))
                connection.commit()
        except DBAPIError as exc:
            log.warning("planner statistics: ANALYZE %s failed (%s); will try again", table, first_line(exc))
            continue
        analysed.append(table)
    return analysed

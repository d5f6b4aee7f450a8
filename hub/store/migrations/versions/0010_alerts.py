"""alerts: the conditions the alert rules found, raised, notified and cleared (hub/monitor/alerts.py)

One row per episode of a condition: `seen_at` when the rules first found it, `raised_at` once it held
long enough (a partner unreachable for HUB_ALERT_UNREACHABLE_MINUTES), `notified_at` once every configured
channel was told (`notified_via` lists those told so far), `cleared_at` when it went away. A partial
unique index keeps one row per key that is not cleared, so two evaluations cannot raise it twice.

Revision ID: 0010
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

import hub.store.db


revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("seen_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("raised_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.Column("notified_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.Column("notified_via", sa.String(length=64), nullable=False),
        sa.Column("cleared_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_alerts_open_key", "alerts", ["key"], unique=True,
                    sqlite_where=sa.text("cleared_at IS NULL"), postgresql_where=sa.text("cleared_at IS NULL"))
    op.create_index("ix_alerts_cleared_at", "alerts", ["cleared_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_cleared_at", table_name="alerts")
    op.drop_index("uq_alerts_open_key", table_name="alerts")
    op.drop_table("alerts")

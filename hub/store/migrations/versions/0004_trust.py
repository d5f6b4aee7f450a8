"""trust: hash-chained timeline and audit log, API tokens, refusals, purged payloads

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import hub.store.db


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNSEALED = sa.text("chain_seq IS NULL")


def _chain_columns() -> list[sa.Column]:
    return [sa.Column("digest", sa.String(length=64), nullable=True),
            sa.Column("chain_seq", sa.BigInteger(), nullable=True),
            sa.Column("content_hash", sa.String(length=64), nullable=True),
            sa.Column("chain_hash", sa.String(length=64), nullable=True)]


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("received_bytes", existing_type=sa.LargeBinary(), nullable=True)
        batch.add_column(sa.Column("purged_at", hub.store.db.UtcDateTime(), nullable=True))
    with op.batch_alter_table("events") as batch:
        for column in _chain_columns():
            batch.add_column(column)
        batch.create_unique_constraint("uq_events_chain_seq", ["chain_seq"])
    op.create_index("ix_events_unsealed", "events", ["id"], sqlite_where=UNSEALED, postgresql_where=UNSEALED)
    op.create_table(
        "audit_log",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        *_chain_columns(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_seq", name="uq_audit_log_chain_seq"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_unsealed", "audit_log", ["id"], sqlite_where=UNSEALED, postgresql_where=UNSEALED)
    op.create_table(
        "api_tokens",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("post_code", sa.String(length=20), nullable=True),
        sa.Column("partner", sa.String(length=20), nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("expires_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("revoked_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.Column("last_used_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_id", name="uq_api_tokens_token_id"),
    )
    op.create_table(
        "refusals",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("partner", sa.String(length=20), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_refusals_at", "refusals", ["at"])


def downgrade() -> None:
    op.drop_index("ix_refusals_at", table_name="refusals")
    op.drop_table("refusals")
    op.drop_table("api_tokens")
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_events_unsealed", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_chain_seq", type_="unique")
        for name in ("chain_hash", "content_hash", "chain_seq", "digest"):
            batch.drop_column(name)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("purged_at")
        batch.alter_column("received_bytes", existing_type=sa.LargeBinary(), nullable=False)

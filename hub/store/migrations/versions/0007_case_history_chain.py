"""case history chain: the registry's case status history is sealed into a hash chain of its own

`case_events` rows get the columns of a chained row (chain_seq, content_hash, chain_hash), sealed by
the hub like its timeline (hub/evidence/chains.py, registry/models.py): a status edited in SQL then
fails `hub evidence verify`. Rows written before this revision are sealed by the first sealing run.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_events") as table:
        table.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        table.add_column(sa.Column("chain_hash", sa.String(64), nullable=True))
        table.create_unique_constraint("uq_case_events_chain_seq", ["chain_seq"])
    op.create_index("ix_case_events_unsealed", "case_events", ["id"], sqlite_where=sa.text("chain_seq IS NULL"),
                    postgresql_where=sa.text("chain_seq IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_case_events_unsealed", table_name="case_events")
    with op.batch_alter_table("case_events") as table:
        table.drop_constraint("uq_case_events_chain_seq", type_="unique")
        table.drop_column("chain_hash")
        table.drop_column("content_hash")
        table.drop_column("chain_seq")

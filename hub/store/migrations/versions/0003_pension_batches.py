"""life certificates (service 8): batches sent to CDG

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import hub.store.db


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pension_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("certificates", sa.Integer(), nullable=False),
        sa.Column("death_notices", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Integer(), nullable=True),
        sa.Column("partner_reference", sa.String(length=120), nullable=True),
        sa.Column("acknowledgement", sa.LargeBinary(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("submitted_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.Column("acknowledged_at", hub.store.db.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference", name="uq_pension_batches_reference"),
        sa.UniqueConstraint("message_id", name="uq_pension_batches_message_id"),
    )
    op.create_index("ix_pension_batches_status", "pension_batches", ["status"])
    op.create_index("ix_cases_request_message_id", "cases", ["request_message_id"])


def downgrade() -> None:
    op.drop_index("ix_cases_request_message_id", table_name="cases")
    op.drop_index("ix_pension_batches_status", table_name="pension_batches")
    op.drop_table("pension_batches")

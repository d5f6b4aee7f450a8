"""all partners and services: delivery operations, polled files, citizen status, cases without a citizen or post

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import hub.store.db


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("operation", sa.String(length=120), nullable=True))
    op.create_table(
        "inbound_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("partner", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("processed_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner", "name", "digest", name="uq_inbound_files_partner_name_digest"),
    )
    with op.batch_alter_table("citizens") as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=12), nullable=False, server_default="ACTIVE"))
    with op.batch_alter_table("cases") as batch_op:
        batch_op.alter_column("citizen_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                              nullable=True)
        batch_op.alter_column("post_code", existing_type=sa.String(length=12), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch_op:
        batch_op.alter_column("post_code", existing_type=sa.String(length=12), nullable=False)
        batch_op.alter_column("citizen_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                              nullable=False)
    with op.batch_alter_table("citizens") as batch_op:
        batch_op.drop_column("status")
    op.drop_table("inbound_files")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("operation")

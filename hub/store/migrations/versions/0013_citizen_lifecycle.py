"""citizens' lifecycle: the history of each citizen's record, the date of death, near-duplicates by birth date

- citizen_changes: every correction, death and transfer of a citizen, with the value it replaced, who, when
  and why (registry/citizens.py); filled from now on (earlier changes were not kept).
- citizens.died_on: the date of death of a DECEASED citizen.
- citizens(birth_date): a registration looks for records with the same names and birth date (a warning of a
  near-duplicate) through this index, not through the whole table.

Revision ID: 0013
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

import hub.store.db

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "citizen_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("citizen_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", hub.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("post_code", sa.String(length=12), nullable=False),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizens.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_citizen_changes_citizen_id", "citizen_changes", ["citizen_id"])
    op.create_index("ix_citizen_changes_post_code", "citizen_changes", ["post_code"])
    with op.batch_alter_table("citizens") as batch:
        batch.add_column(sa.Column("died_on", sa.Date(), nullable=True))
    op.create_index("ix_citizens_birth_date", "citizens", ["birth_date"])


def downgrade() -> None:
    op.drop_index("ix_citizens_birth_date", table_name="citizens")
    with op.batch_alter_table("citizens") as batch:
        batch.drop_column("died_on")
    op.drop_index("ix_citizen_changes_post_code", table_name="citizen_changes")
    op.drop_index("ix_citizen_changes_citizen_id", table_name="citizen_changes")
    op.drop_table("citizen_changes")

"""case attempts: a FAILED case retried sends its request again under a new message id

- cases.attempt: 1, then one more at each retry (registry/case_actions.py); the request's message id
  carries it from the second attempt on (REGISTRY-<reference>-R2), so the hub takes the retry as a new
  message instead of the same one again.
- cases(created_at): the case list's "opened between" filter reads an index, not the table.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
    op.create_index("ix_cases_created_at", "cases", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_created_at", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("attempt")

"""deliveries: each partner's due deliveries in due order (ix_deliveries_partner_due)

The claim and the look for due work skip the partners that cannot take more now (their in-flight limit
reached, their circuit open). Read from the due index alone, skipping them meant reading past every delivery
of theirs: a partner down for a day, its backlog growing, made every claim for the others read all of it.
With this index each partner that can take work is looked up on its own (hub/delivery/outbox.py).

Revision ID: 0019
Revises: 0018
"""
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_partner_due", "deliveries", ["partner", "state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_partner_due", table_name="deliveries")

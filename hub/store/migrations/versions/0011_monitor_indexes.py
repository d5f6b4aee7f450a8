"""monitor indexes: the console's overview reads a million-message history through indexes only

The overview (hub/monitor/figures.py) shows, per partner, the messages of the last 15 min / 1 h / 24 h,
an hourly series, the dead letters, the last success and the last failure. Without these it would read
the whole tables at every refresh:

- messages(received_at): the first message of a time window, one index probe; the window's counts
  then use (sender, id) and (recipient, id, sender) from 0005, index-only.
- deliveries(partner, state, delivered_at): a partner's dead letters and waiting deliveries counted
  from the index, and its last success as the index's last entry.
- deliveries(partner, id) of the deliveries that failed (last_error set): a partner's last failure.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_deliveries_partner_state_delivered_at", "deliveries", ["partner", "state", "delivered_at"])
    op.create_index("ix_deliveries_failed", "deliveries", ["partner", "id"],
                    sqlite_where=sa.text("last_error IS NOT NULL"), postgresql_where=sa.text("last_error IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_failed", table_name="deliveries")
    op.drop_index("ix_deliveries_partner_state_delivered_at", table_name="deliveries")
    op.drop_index("ix_messages_received_at", table_name="messages")

"""posts kept by administrators, and a partner's own traffic read from an index

- posts: the languages a post serves in, its time zone, when and why it was closed, and who created it
  through the API (none: the reference file, config/reference/posts.csv). Existing posts get the defaults
  until the next start loads the file's values (registry/reference.py).
- deliveries(partner, message_pk): the messages delivered to one partner, newest first, read from the index
  (GET /api/v1/partner/messages, hub/partner_view.py), and refusals(partner, id): the inputs the hub refused
  from one partner (GET /api/v1/partner/refusals).

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

import hub.store.db


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch_op:
        batch_op.add_column(sa.Column("languages", sa.String(length=40), nullable=False, server_default="ar;fr"))
        batch_op.add_column(sa.Column("time_zone", sa.String(length=40), nullable=False, server_default="UTC"))
        batch_op.add_column(sa.Column("closed_at", hub.store.db.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=120), nullable=True))
    op.create_index("ix_deliveries_partner_message_pk", "deliveries", ["partner", "message_pk"])
    op.create_index("ix_refusals_partner_id", "refusals", ["partner", "id"])


def downgrade() -> None:
    op.drop_index("ix_refusals_partner_id", table_name="refusals")
    op.drop_index("ix_deliveries_partner_message_pk", table_name="deliveries")
    with op.batch_alter_table("posts") as batch_op:
        batch_op.drop_column("created_by")
        batch_op.drop_column("closed_reason")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("time_zone")
        batch_op.drop_column("languages")

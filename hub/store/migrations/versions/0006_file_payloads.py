"""file payloads: a message may keep its bytes in a file of the engine's file store (a claim check)

A streamed CDG batch of 100,000 life certificates is about 35 MB: as a column it would be read whole
into memory (several copies: driver, ORM) wherever the row is loaded. Such a message keeps its bytes in
a file under the hub's var dir, named by `messages.payload_path` (relative to the file store) with its
size; `messages.digest` is the file's sha256, which the timeline seals. A delivery of such a message
records the file it sent (`deliveries.sent_path`: the hub-signed partner document, written once and
re-used when the send is tried again).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("payload_path", sa.String(255), nullable=True))
        table.add_column(sa.Column("payload_size", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("deliveries") as table:
        table.add_column(sa.Column("sent_path", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("sent_path")
    with op.batch_alter_table("messages") as table:
        table.drop_column("payload_size")
        table.drop_column("payload_path")

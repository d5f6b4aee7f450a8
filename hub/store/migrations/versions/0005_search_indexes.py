"""search indexes: the message search and intake's lookups stay index-only at a million messages

The search API (GET /api/v1/messages) filters on one column and answers newest first (ORDER BY id
DESC): an index on (column, id) gives both the rows and their order, so the first page reads a page's
worth of index entries, whatever the table's size. SQLite appends the rowid (= id) to every index, but
PostgreSQL does not, hence (state, id) and (correlation_id, id) replacing the single-column ones. The
partner filter (sender or recipient) uses (sender, id) and (recipient, id, sender): sender is there so
that counting what a partner received from others reads the index only. A message looked up by its id
alone (GET /api/v1/messages/{id}, an answer's InReplyTo, a resend) uses (message_id).

Revision ID: 0005
Revises: 0004
"""
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NEW = {"ix_messages_state_id": ["state", "id"],
       "ix_messages_correlation_id_id": ["correlation_id", "id"],
       "ix_messages_type_id": ["type", "id"],
       "ix_messages_sender_id": ["sender", "id"],
       "ix_messages_recipient_id_sender": ["recipient", "id", "sender"],
       "ix_messages_message_id": ["message_id"]}
REPLACED = {"ix_messages_state": ["state"], "ix_messages_correlation_id": ["correlation_id"]}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, "messages", columns)
    for name in REPLACED:
        op.drop_index(name, table_name="messages")


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, "messages", columns)
    for name in NEW:
        op.drop_index(name, table_name="messages")

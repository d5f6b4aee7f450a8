"""mapping versions, their activations, and the partner schemas as loaded

- mapping_versions: each version of a mapping's XSLT (a mapping is its path under mappings/), numbered from 1
  per mapping, with its sha256, author, comment and time; the files under mappings/ become version 1 at the next
  start (hub/mappings/store.py).
- mapping_activations: a mapping's activations in order (who, when, from which version to which, why); the
  newest names the active version, and max(id) tells every hub process that something changed.
- mapping_replays: the result of each replay of a version over stored messages (identical, different, invalid),
  which its activation shows.
- partner_schemas: the XSDs under schemas/ with their sha256, read-only.

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

import hub.store.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mapping_versions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("mapping", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("xslt", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.String(length=120), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", hub.store.db.UtcDateTime(), nullable=False),
        sa.UniqueConstraint("mapping", "number", name="uq_mapping_versions_number"),
        sa.UniqueConstraint("mapping", "sha256", name="uq_mapping_versions_sha256"),
    )
    op.create_table(
        "mapping_activations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("mapping", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("from_number", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", hub.store.db.UtcDateTime(), nullable=False),
        sa.UniqueConstraint("mapping", "sequence", name="uq_mapping_activations_sequence"),
    )
    op.create_table(
        "mapping_replays",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("mapping", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", hub.store.db.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("identical", sa.Integer(), nullable=False),
        sa.Column("different", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
    )
    op.create_index("ix_mapping_replays_version", "mapping_replays", ["mapping", "number", "id"])
    op.create_table(
        "partner_schemas",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", hub.store.db.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("partner_schemas")
    op.drop_index("ix_mapping_replays_version", table_name="mapping_replays")
    op.drop_table("mapping_replays")
    op.drop_table("mapping_activations")
    op.drop_table("mapping_versions")

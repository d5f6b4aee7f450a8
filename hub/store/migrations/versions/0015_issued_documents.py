"""issued documents: the printed documents for citizens and their verification codes

The registration certificate and the printable forms of a case's documents (registry/printing/) are each
recorded when issued: the SHA-256 of the verification code printed on them (the code itself is not kept),
what they are about, and the registry's signed record of what the public verification shows. Revocation is
kept beside it.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

import hub.store.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "issued_documents",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("citizen_id", ID, nullable=True),
        sa.Column("case_id", ID, nullable=True),
        sa.Column("post_code", sa.String(length=12), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("issued_at", hub.store.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=120), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("revoked_at", hub.store.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=120), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizens.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["post_code"], ["posts.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_digest"),
    )
    with op.batch_alter_table("issued_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issued_documents_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_issued_documents_citizen_id"), ["citizen_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_issued_documents_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("issued_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issued_documents_case_id"))
        batch_op.drop_index(batch_op.f("ix_issued_documents_citizen_id"))
        batch_op.drop_index(batch_op.f("ix_issued_documents_subject"))
    op.drop_table("issued_documents")

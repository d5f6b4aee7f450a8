"""citizen search: the words of citizens' names as an index, and the citizens' birth date and passport indexed

The citizen search (registry/citizen_search.py) finds citizens by name, Latin or Arabic, in any word order and
however the name was typed (registry/names.py folds case, accents and Arabic letter variants). A LIKE over the
names would read the whole table at five million citizens; instead each word of a citizen's four name fields is
a row of citizen_name_tokens, normalised, and a search word's citizens are read in id order from (token,
citizen_id), or from (token, post_code, citizen_id) for an agent's search, always limited to their post. The
primary key (citizen_id, token) checks a candidate's other words and lets a citizen's words be replaced.
Tokens are compared in code-point order (COLLATE "C" on PostgreSQL) so that a prefix is one range whatever the
database's collation.

birth_date and passport_number get an index each: both are search filters of their own (birth_date's only when
no earlier revision made it: the near-duplicate check of a registration reads it too, and a downgrade keeps it). The post's index becomes
(post_code, id): a post's citizens in registration order, a page of them read from the index's start.

The words of the citizens already stored are written here, a thousand citizens at a time, normalised as
registry/names.py did when this revision was written (copied below: the engine imports no app, and a migration
keeps doing what it did when the code moves on).

Revision ID: 0017
Revises: 0016
"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BATCH = 1000

_LATIN_FOLDS = str.maketrans({"ø": "o", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "ı": "i", "þ": "th",
                              "æ": "ae", "œ": "oe"})
_ARABIC_FOLDS = str.maketrans({"\u0671": "\u0627", "\u0629": "\u0647", "\u0649": "\u064a", "\u06cc": "\u064a",
                               "\u06a9": "\u0643", "\u0640": None})


def tokens(*names: str) -> list[str]:
    """registry/names.py `tokens` as of this revision."""
    seen: dict[str, None] = {}
    for name in names:
        decomposed = unicodedata.normalize("NFKD", (name or "").casefold())
        kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch) and unicodedata.category(ch) != "Mn")
        folded = unicodedata.normalize("NFC", kept.translate(_LATIN_FOLDS).translate(_ARABIC_FOLDS))
        for word in re.findall(r"\w+", folded):
            for part in word.split("_"):
                if part:
                    seen.setdefault(part[:100], None)
    return list(seen)


def upgrade() -> None:
    op.create_table(
        "citizen_name_tokens",
        sa.Column("citizen_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("citizens.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token", sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql"), nullable=False),
        sa.Column("post_code", sa.String(12), nullable=False),
        sa.PrimaryKeyConstraint("citizen_id", "token"),
    )
    op.create_index("ix_citizen_name_tokens_token_post", "citizen_name_tokens", ["token", "post_code", "citizen_id"])
    op.create_index("ix_citizen_name_tokens_token_citizen", "citizen_name_tokens", ["token", "citizen_id"])
    if "ix_citizens_birth_date" not in {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("citizens")}:
        op.create_index("ix_citizens_birth_date", "citizens", ["birth_date"])  # the citizens' lifecycle makes it too
    op.create_index("ix_citizens_passport_number", "citizens", ["passport_number"])
    op.create_index("ix_citizens_post_code_id", "citizens", ["post_code", "id"])
    op.drop_index("ix_citizens_post_code", table_name="citizens")
    _fill()


def _fill() -> None:
    connection = op.get_bind()
    citizens = sa.table("citizens", sa.column("id"), sa.column("post_code"), sa.column("given_name_latin"),
                        sa.column("family_name_latin"), sa.column("given_name_arabic"), sa.column("family_name_arabic"))
    words = sa.table("citizen_name_tokens", sa.column("citizen_id"), sa.column("token"), sa.column("post_code"))
    after = 0
    while True:
        rows = connection.execute(sa.select(citizens).where(citizens.c.id > after).order_by(citizens.c.id)
                                  .limit(BATCH)).all()
        if not rows:
            return
        values = [{"citizen_id": row.id, "token": token, "post_code": row.post_code}
                  for row in rows
                  for token in tokens(row.given_name_latin, row.family_name_latin, row.given_name_arabic,
                                      row.family_name_arabic)]
        if values:
            connection.execute(sa.insert(words), values)
        after = rows[-1].id


def downgrade() -> None:
    op.create_index("ix_citizens_post_code", "citizens", ["post_code"])
    op.drop_index("ix_citizens_post_code_id", table_name="citizens")
    op.drop_index("ix_citizens_passport_number", table_name="citizens")  # ix_citizens_birth_date stays: see upgrade
    op.drop_index("ix_citizen_name_tokens_token_citizen", table_name="citizen_name_tokens")
    op.drop_index("ix_citizen_name_tokens_token_post", table_name="citizen_name_tokens")
    op.drop_table("citizen_name_tokens")

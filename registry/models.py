"""Registry tables: consular posts (reference data), citizens, cases and what happened to them, and the
life-certificate batches sent to CDG.

A case's status history (`case_events`) is a hash chain of its own, "cases", sealed and verified by the hub
like its timeline (registry/history.py).

They hang on the registry's own MetaData (`Base.metadata`), which the registry app hands to the hub's
migrations (registry/app.py, hub/apps.py): the engine's metadata holds only the engine's tables."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hub.store.db import Id, UtcDateTime


class Base(DeclarativeBase):
    """The registry's tables."""


class Post(Base):
    __tablename__ = "posts"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))  # CONSULATE | CONSULAR_SECTION
    country: Mapped[str] = mapped_column(String(2))
    city: Mapped[str] = mapped_column(String(80))
    jurisdiction: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: closed (closed_at, closed_reason)
    # ISO 639-1 codes the post serves citizens in, ";"-separated ("ar;fr;es"); its IANA time zone
    languages: Mapped[str] = mapped_column(String(40), default="ar;fr", server_default="ar;fr")
    time_zone: Mapped[str] = mapped_column(String(40), default="UTC", server_default="UTC")
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    closed_reason: Mapped[str | None] = mapped_column(Text)
    # who created it through the API (an administrator, as the audit log names them); None: the reference
    # file. registry/reference.py: the file never changes a post an administrator created, nor reopens one.
    created_by: Mapped[str | None] = mapped_column(String(120))


class Citizen(Base):
    __tablename__ = "citizens"
    __table_args__ = (Index("ix_citizens_post_code_id", "post_code", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(String(20), unique=True)
    given_name_latin: Mapped[str] = mapped_column(String(100))
    family_name_latin: Mapped[str] = mapped_column(String(100))
    given_name_arabic: Mapped[str] = mapped_column(String(100))
    family_name_arabic: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[dt.date] = mapped_column(Date, index=True)  # near-duplicates: same names, same birth date
    birth_place: Mapped[str] = mapped_column(String(100), default="")
    sex: Mapped[str] = mapped_column(String(1))
    cnie: Mapped[str | None] = mapped_column(String(8), index=True)
    passport_number: Mapped[str | None] = mapped_column(String(9), index=True)
    country: Mapped[str] = mapped_column(String(2))
    city: Mapped[str] = mapped_column(String(80))
    address_lines: Mapped[str] = mapped_column(Text, default="")
    phone: Mapped[str | None] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    post_code: Mapped[str] = mapped_column(ForeignKey("posts.code"))  # indexed with id: a post's citizens in order
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # PENDING (DGSN's identity check not answered yet) | ACTIVE | REJECTED | DECEASED (registry/citizens.py)
    status: Mapped[str] = mapped_column(String(12), default="ACTIVE", server_default="ACTIVE")
    died_on: Mapped[dt.date | None] = mapped_column(Date)

    post: Mapped[Post] = relationship()


class CitizenChange(Base):
    """One change of a citizen's record, with the value it replaced (registry/citizens.py): a correction of a
    field, a death recorded, a transfer between posts. `post_code` is the citizen's post when it happened (a
    transfer's: the post it left), so a former post's agents still see what happened while the citizen was
    theirs, the transfer out included."""
    __tablename__ = "citizen_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizens.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(20))  # CORRECTION | CONTACT | DECEASED | TRANSFER | REGISTERED
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(120))  # as the audit log names them (Identity.actor)
    reason: Mapped[str] = mapped_column(Text, default="")
    post_code: Mapped[str] = mapped_column(String(12), index=True)


# Name words are compared in code-point order, whatever the database's collation: a prefix is then one index
# range (registry/names.py `prefix_end`). SQLite's default (BINARY) is that order already.
TOKEN = String(100).with_variant(String(100, collation="C"), "postgresql")


class CitizenNameToken(Base):
    """One word of a citizen's names (Latin or Arabic), normalised (registry/names.py): what the name search reads
    (registry/citizen_search.py). (token, citizen_id) lists a word's citizens in id order; the post is repeated here
    so that an agent's search stays in their post's part: (token, post_code, citizen_id). Kept in step with the
    record by `citizen_search.reindex`."""
    __tablename__ = "citizen_name_tokens"
    __table_args__ = (Index("ix_citizen_name_tokens_token_post", "token", "post_code", "citizen_id"),
                      Index("ix_citizen_name_tokens_token_citizen", "token", "citizen_id"))

    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"), primary_key=True)
    token: Mapped[str] = mapped_column(TOKEN, primary_key=True)
    post_code: Mapped[str] = mapped_column(String(12))


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    service: Mapped[str] = mapped_column(String(40), index=True)
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizens.id"), index=True)  # None: not registered
    post_code: Mapped[str | None] = mapped_column(ForeignKey("posts.code"), index=True)  # None: no post yet
    status: Mapped[str] = mapped_column(String(24), index=True)
    details: Mapped[dict] = mapped_column(JSON)
    outcome: Mapped[dict | None] = mapped_column(JSON)
    request_message_id: Mapped[str | None] = mapped_column(String(80), index=True)
    partner_reference: Mapped[str | None] = mapped_column(String(120))
    # 1, then one more at each retry of a FAILED case: its request goes again under a new message id
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    citizen: Mapped[Citizen | None] = relationship()
    history: Mapped[list["CaseEvent"]] = relationship(order_by="CaseEvent.id")
    documents: Mapped[list["CaseDocument"]] = relationship(order_by="CaseDocument.id")


class CaseEvent(Base):
    """One status of a case (a note keeps the status it has): written unsealed with the change, then sealed
    by the hub into the "cases" chain (chain_seq, content_hash, chain_hash as in hub/evidence/chains.py)."""
    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_unsealed", "id", sqlite_where=text("chain_seq IS NULL"),
                            postgresql_where=text("chain_seq IS NULL")),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class CaseDocument(Base):
    __tablename__ = "case_documents"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the signed XML exactly as it arrived
    source_message_id: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class PensionBatch(Base):
    """One LifeCertificateBatch sent to CDG: PREPARED -> SUBMITTED -> ACKNOWLEDGED, or FAILED
    (registry/services/life_certificates.py)."""

    __tablename__ = "pension_batches"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    message_id: Mapped[str] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    certificates: Mapped[int] = mapped_column(Integer)
    death_notices: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int | None] = mapped_column(Integer)
    rejected: Mapped[int | None] = mapped_column(Integer)
    partner_reference: Mapped[str | None] = mapped_column(String(120))
    acknowledgement: Mapped[bytes | None] = mapped_column(LargeBinary)  # CDG's signed AccuseLot as it arrived
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)



class IssuedDocument(Base):
    """A document the registry printed for a citizen (registry/printing/): what its verification code finds.

    Only the code's SHA-256 is kept (the code itself is on the paper alone, so a copy of the database finds no
    document by code), and `record` is the registry's signed record of what the public verification shows:
    no more than is printed, and less. Revocation sits outside the signature: it is a later fact."""
    __tablename__ = "issued_documents"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(40), index=True)  # a registration id or a case reference
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizens.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    post_code: Mapped[str | None] = mapped_column(ForeignKey("posts.code"))
    language: Mapped[str] = mapped_column(String(2))
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    issued_by: Mapped[str] = mapped_column(String(120))
    record: Mapped[bytes] = mapped_column(LargeBinary)  # the signed IssuedDocument XML
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(120))
    revoked_reason: Mapped[str | None] = mapped_column(Text)

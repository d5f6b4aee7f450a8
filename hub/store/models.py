"""The engine's tables: messages as received, their deliveries (the outbox), and their timelines."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.store.db import Base, Id, UtcDateTime


class MessageState:
    ACCEPTED = "ACCEPTED"      # stored, receipt given, deliveries queued
    DELIVERED = "DELIVERED"    # every delivery delivered
    DEAD = "DEAD"              # at least one delivery dead-lettered
    ALL = (ACCEPTED, DELIVERED, DEAD)


class DeliveryState:
    PENDING = "PENDING"        # due at next_attempt_at (claimable when its lease, if any, expired)
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"
    ALL = (PENDING, DELIVERED, DEAD)


class Message(Base):
    __tablename__ = "messages"
    # Search (newest first within one filter) and lookups by id: hub/store/migrations/versions/0005_search_indexes.py
    __table_args__ = (UniqueConstraint("sender", "message_id", name="uq_messages_sender_message_id"),
                      Index("ix_messages_state_id", "state", "id"),
                      Index("ix_messages_correlation_id_id", "correlation_id", "id"),
                      Index("ix_messages_type_id", "type", "id"),
                      Index("ix_messages_sender_id", "sender", "id"),
                      Index("ix_messages_recipient_id_sender", "recipient", "id", "sender"),
                      Index("ix_messages_message_id", "message_id"),
                      # the monitor's time windows (hub/store/migrations/versions/0011_monitor_indexes.py)
                      Index("ix_messages_received_at", "received_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(80))
    sender: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(80))
    correlation_id: Mapped[str] = mapped_column(String(80))
    in_reply_to: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    received_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)   # None once purged (retention)
    # The canonical form built from verified content only (mapped in from a partner's format, or the signed
    # document re-enveloped when that differs from what arrived): what delivery maps. None: use received_bytes.
    canonical_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    purged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # payload bytes removed; hashes kept
    # A claim check: a document too large to hold (a streamed batch) keeps its bytes in a file of the
    # engine's file store (hub/store/files.py), named relative to it; `digest` is then the file's sha256
    # and received_bytes/canonical_bytes stay None.
    payload_path: Mapped[str | None] = mapped_column(String(255))
    payload_size: Mapped[int | None] = mapped_column(BigInteger)

    deliveries: Mapped[list["Delivery"]] = relationship(back_populates="message", order_by="Delivery.id")
    events: Mapped[list["Event"]] = relationship(order_by="Event.id")

    @property
    def canonical(self) -> bytes:
        return self.canonical_bytes or self.received_bytes

    @property
    def in_file(self) -> bool:
        return self.payload_path is not None


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),
                      # the due deliveries of each partner that can take work (hub/delivery/outbox.py; migration 0019)
                      Index("ix_deliveries_partner_due", "partner", "state", "next_attempt_at"),
                      # the monitor's per-partner figures (hub/store/migrations/versions/0011_monitor_indexes.py)
                      Index("ix_deliveries_partner_state_delivered_at", "partner", "state", "delivered_at"),
                      Index("ix_deliveries_failed", "partner", "id", sqlite_where=text("last_error IS NOT NULL"),
                            postgresql_where=text("last_error IS NOT NULL")),
                      # a partner's own traffic, newest first (hub/partner_view.py; migration 0016)
                      Index("ix_deliveries_partner_message_pk", "partner", "message_pk"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    partner: Mapped[str] = mapped_column(String(20), index=True)
    mapping: Mapped[str | None] = mapped_column(String(200))
    schema_name: Mapped[str | None] = mapped_column(String(200))
    operation: Mapped[str | None] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    partner_receipt: Mapped[bytes | None] = mapped_column(LargeBinary)
    sent_path: Mapped[str | None] = mapped_column(String(255))   # a file message: the file as sent (file store)
    partner_reference: Mapped[str | None] = mapped_column(String(120))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    message: Mapped[Message] = relationship(back_populates="deliveries")


class Chained:
    """Columns of a row in a hash chain (hub/evidence/chains.py): written unsealed, then sealed in order.

    `digest` is the SHA-256 of the bytes the row vouches for, taken when it is written; sealing gives
    the row its place (`chain_seq`), the hash of its own content, and the chain hash
    sha256(previous chain_hash + content_hash)."""

    digest: Mapped[str | None] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class Event(Chained, Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_unsealed", "id", sqlite_where=text("chain_seq IS NULL"),
                            postgresql_where=text("chain_seq IS NULL")),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class AuditEntry(Chained, Base):
    """A human action (resend, cancel, token change, configuration change, viewing a payload)."""
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_unsealed", "id", sqlite_where=text("chain_seq IS NULL"),
                            postgresql_where=text("chain_seq IS NULL")),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(120))        # "token <id> (<name>, <role>)" or "cli <user>"
    action: Mapped[str] = mapped_column(String(40), index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class ApiToken(Base):
    """An API identity. Only the SHA-256 of the secret is stored; the token is shown once at creation."""
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)   # public part, shown in lists and logs
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    post_code: Mapped[str | None] = mapped_column(String(20))        # consular agents: their post
    partner: Mapped[str | None] = mapped_column(String(20))          # partner systems: their party code
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Refusal(Base):
    """An input the hub refused, recorded without its bytes (who, through which door, why)."""
    __tablename__ = "refusals"
    # a partner's own refusals, newest first (hub/partner_view.py; migration 0016)
    __table_args__ = (Index("ix_refusals_partner_id", "partner", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    channel: Mapped[str] = mapped_column(String(16))                 # the door (hub/intake/door.py DOORS)
    partner: Mapped[str | None] = mapped_column(String(20))          # the door's party, or the claimed sender
    status: Mapped[int] = mapped_column(Integer)                     # the HTTP status answered (403, 400, ...)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))                  # sha256 of what was refused


class InboundFile(Base):
    """Files a polling connector handed in: a file seen again (a restart before it was moved) is not re-read."""
    __tablename__ = "inbound_files"
    __table_args__ = (UniqueConstraint("partner", "name", "digest", name="uq_inbound_files_partner_name_digest"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    partner: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))          # ACCEPTED | REFUSED
    detail: Mapped[str] = mapped_column(Text, default="")     # the message id, or why it was refused
    processed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class User(Base):
    """A person who signs in to the console (hub/access/accounts.py): the same roles and post binding as tokens.
    Only an argon2id hash of the password is stored."""
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    post_code: Mapped[str | None] = mapped_column(String(20))        # consular agents: their post
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(120))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)    # consecutive, reset by a success
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ConsoleSession(Base):
    """A signed-in console session: the cookie carries the session id and secret; only the secret's SHA-256
    is stored, with the CSRF token the session's forms must echo."""
    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)      # idle expiry, pushed on use
    absolute_expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # signed out, or the user disabled


class Alert(Base):
    """A condition the alert rules found (hub/monitor/alerts.py): seen, raised once it held long enough,
    notified once, cleared when it went away. At most one row per key is not cleared."""
    __tablename__ = "alerts"
    __table_args__ = (Index("uq_alerts_open_key", "key", unique=True, sqlite_where=text("cleared_at IS NULL"),
                            postgresql_where=text("cleared_at IS NULL")),
                      Index("ix_alerts_cleared_at", "cleared_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))                    # "unreachable:DGSN", stable per condition
    kind: Mapped[str] = mapped_column(String(32))                    # unreachable, dead-letters, certificate, ...
    subject: Mapped[str] = mapped_column(String(200))                # the partner, certificate or case concerned
    detail: Mapped[str] = mapped_column(Text, default="")            # what the rule found, in words
    facts: Mapped[str] = mapped_column(Text, default="{}")           # the same as JSON, for translated texts
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)        # first found (this episode)
    raised_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)     # None while not held long enough
    notified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)   # every configured channel told
    notified_via: Mapped[str] = mapped_column(String(64), default="")      # channels told: "email,webhook"
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class MappingVersion(Base):
    """One version of a mapping's XSLT (hub/mappings/store.py); a mapping is its path under mappings/."""
    __tablename__ = "mapping_versions"
    __table_args__ = (UniqueConstraint("mapping", "number", name="uq_mapping_versions_number"),
                      UniqueConstraint("mapping", "sha256", name="uq_mapping_versions_sha256"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    mapping: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    xslt: Mapped[bytes] = mapped_column(LargeBinary)
    author: Mapped[str] = mapped_column(String(120))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class MappingActivation(Base):
    """A mapping's activations in order: the newest (highest `sequence`) names the active version. Two
    activations at once write the same (mapping, sequence): one commits, the other is refused. Every hub process
    polls max(id) to see that something changed."""
    __tablename__ = "mapping_activations"
    __table_args__ = (UniqueConstraint("mapping", "sequence", name="uq_mapping_activations_sequence"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    mapping: Mapped[str] = mapped_column(String(200))
    sequence: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    from_number: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class MappingReplay(Base):
    """The result of a replay of a mapping version over stored messages (hub/mappings/checks.py replay), kept so
    that its activation shows it: how many outputs were identical, different, invalid for the partner."""
    __tablename__ = "mapping_replays"
    __table_args__ = (Index("ix_mapping_replays_version", "mapping", "number", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    mapping: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(120))
    messages: Mapped[int] = mapped_column(Integer)
    identical: Mapped[int] = mapped_column(Integer)
    different: Mapped[int] = mapped_column(Integer)
    invalid: Mapped[int] = mapped_column(Integer)


class PartnerSchema(Base):
    """A partner schema (XSD under schemas/) as the hub last loaded it: read-only, listed with its sha256."""
    __tablename__ = "partner_schemas"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

"""The engine's tables: messages as received, their deliveries (the outbox), and their timelines."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, UtcDateTime

Id = BigInteger().with_variant(Integer, "sqlite")


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
    __table_args__ = (UniqueConstraint("sender", "message_id", name="uq_messages_sender_message_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(80))
    sender: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(80))
    correlation_id: Mapped[str] = mapped_column(String(80), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    received_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    canonical_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)  # set when a partner format was mapped in
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    deliveries: Mapped[list["Delivery"]] = relationship(back_populates="message", order_by="Delivery.id")
    events: Mapped[list["Event"]] = relationship(order_by="Event.id")

    @property
    def canonical(self) -> bytes:
        return self.canonical_bytes or self.received_bytes


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)

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
    partner_reference: Mapped[str | None] = mapped_column(String(120))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    message: Mapped[Message] = relationship(back_populates="deliveries")


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


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

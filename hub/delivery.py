"""Delivery workers: claim due deliveries, map, sign, send through the partner's connector, record.

Network I/O happens outside any database transaction: a claim is one short transaction, the
outcome another. A worker killed between the two leaves a lease that expires; the delivery is then
sent again (at-least-once) and the partner's deduplication by message id makes the effect once.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from sqlalchemy import select

from connectors.base import Outbound
from hub import metrics, timeline
from hub.db import utcnow
from hub.errors import DeliveryError, HubError, InputError, PermanentDeliveryError, TransientDeliveryError
from hub.intake import accept_partner_document, business_document
from hub.models import Delivery, DeliveryState, Message, MessageState
from hub.outbox import claim_due
from hub.retry import next_delay
from hub.signing import DS_NS
from hub.xmlsafe import limits, parse_trusted, parse_untrusted, to_bytes

log = logging.getLogger("hub.delivery")


def render_for_partner(hub, message: Message, delivery: Delivery) -> bytes:
    """The bytes a partner receives: mapped to its format and signed by the hub.

    Without a mapping the canonical envelope travels; its business document keeps the original
    sender's signature, or is signed by the hub when it has none (documents the hub mapped in).
    """
    envelope = parse_trusted(message.canonical)
    if delivery.mapping:
        document = hub.mappings.apply(delivery.mapping, envelope)
        if delivery.schema_name:
            try:
                hub.schemas.validate(document, delivery.schema_name, what=f"mapped document for {delivery.partner}")
            except HubError as exc:
                raise PermanentDeliveryError(str(exc)) from None
        return to_bytes(hub.signer.sign(document))
    document = business_document(envelope)
    if document.find(f"{{{DS_NS}}}Signature") is None:
        document.getparent().replace(document, hub.signer.sign(document))
    return to_bytes(envelope)


def deliver(hub, delivery_id: int) -> str:
    """Deliver one claimed delivery and record the outcome; returns the new state."""
    with hub.sessions() as session:
        delivery = session.get(Delivery, delivery_id)
        message = session.get(Message, delivery.message_pk)
        session.expunge_all()
    party = hub.config.parties[delivery.partner]
    transport = party.transport.upper()
    started = time.perf_counter()
    sent = None
    try:
        body = render_for_partner(hub, message, delivery)
        result = hub.connectors[delivery.partner].send(
            Outbound(message.message_id, message.type, body, operation=delivery.operation))
        sent = (body, result.receipt, f"over {transport}: {result.detail}")
        answer = take_in_answer(hub, delivery.partner, result.receipt)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a bug or an unexpected library error: keep the message, try again later
        log.exception("delivering %s to %s", message.message_id, delivery.partner)
        error = TransientDeliveryError(f"unexpected {type(exc).__name__}: {exc}")
    else:
        metrics.DELIVERY_SECONDS.labels(delivery.partner).observe(time.perf_counter() - started)
        _record_delivered(hub, delivery_id, sent, answer)
        metrics.DELIVERIES.labels(delivery.partner, "delivered").inc()
        return DeliveryState.DELIVERED
    return _record_failure(hub, delivery_id, error, transport, sent)


def take_in_answer(hub, partner: str, receipt: bytes | None) -> str | None:
    """A synchronous answer (an inbound route knows its root element) goes through intake like a callback.

    Returns the answer's message id, or None when the receipt is a plain acknowledgement. Intake
    deduplicates, so a delivery sent again after a crash takes the same answer in only once."""
    if not receipt or not receipt.lstrip().startswith(b"<"):
        return None  # no body, or plain text: kept as the partner's receipt, nothing to take in
    try:
        root = parse_untrusted(receipt, max_bytes=hub.settings.max_message_bytes, what=f"{partner}'s answer",
                               **limits(hub.settings))
    except InputError as exc:  # XML the hub cannot read (malformed, DOCTYPE, over the cap): never dropped silently
        raise PermanentDeliveryError(f"delivered, but {partner}'s answer was refused: {exc.detail}") from None
    if hub.config.inbound_for(partner, root.tag) is None:
        return None
    try:
        return accept_partner_document(hub, partner, receipt).message_id
    except InputError as exc:
        raise PermanentDeliveryError(f"delivered, but {partner}'s answer was refused: {exc.detail}") from None


def _record_sent(session, message: Message, delivery: Delivery, sent: tuple[bytes, bytes | None, str]) -> None:
    """Keep what was sent and what the partner answered, as evidence. The stored bytes are written once:
    the timeline's digests vouch for them, so a later send (a lease that expired during a slow send, an
    answer that failed to be taken in) is a SENT_AGAIN event carrying its own digests instead."""
    body, receipt, detail = sent
    attempt = f"(attempt {delivery.attempts})"
    if delivery.sent_bytes is None:
        delivery.sent_bytes, delivery.partner_receipt = body, receipt
        timeline.record(session, message, timeline.SENT, f"to {delivery.partner} {detail} {attempt}", delivery)
        if receipt:  # kept byte for byte as the partner answered; its digest goes into the evidence chain
            timeline.record(session, message, timeline.PARTNER_RECEIPT,
                            f"{len(receipt)} bytes from {delivery.partner}", delivery)
        return
    answered = f"; answer sha256 {timeline.sha256(receipt)}" if receipt else ""
    timeline.record(session, message, timeline.SENT_AGAIN,
                    f"to {delivery.partner} {detail} {attempt}: sha256 {timeline.sha256(body)}{answered} "
                    "(the first send's bytes are the ones kept)", delivery)


def _record_delivered(hub, delivery_id: int, sent: tuple[bytes, bytes | None, str], answer: str | None) -> None:
    now = utcnow()
    with hub.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        message = session.get(Message, delivery.message_pk)
        _record_sent(session, message, delivery, sent)
        if delivery.state != DeliveryState.DELIVERED:
            delivery.state, delivery.delivered_at, delivery.last_error = DeliveryState.DELIVERED, now, None
        delivery.lease_owner, delivery.lease_expires_at = None, None
        if answer:
            timeline.record(session, message, timeline.ANSWERED, f"{delivery.partner} answered with {answer}", delivery)
        _refresh_message_state(session, message)


def _record_failure(hub, delivery_id: int, error: DeliveryError, transport: str,
                    sent: tuple[bytes, bytes | None, str] | None = None) -> str:
    """A failed attempt: retry later or dead-letter. `sent`: the partner did take the message (the failure
    came after, e.g. its answer was refused); what was sent and answered is kept all the same."""
    now = utcnow()
    listeners = None
    with hub.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        message = session.get(Message, delivery.message_pk)
        if sent is not None:
            _record_sent(session, message, delivery, sent)
        policy = hub.config.parties[delivery.partner].retry
        what = f"delivering {message.message_id} to {delivery.partner} over {transport}: {error.reason}"
        delivery.lease_owner, delivery.lease_expires_at, delivery.last_error = None, None, error.reason
        if error.retryable and delivery.attempts < policy.max_attempts:
            delay = next_delay(policy, delivery.attempts, error.retry_after)
            delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
            timeline.record(session, message, timeline.RETRY_SCHEDULED, f"{what} (will retry in {delay:.0f} s)",
                            delivery)
            metrics.DELIVERIES.labels(delivery.partner, "retry").inc()
            log.warning("%s (will retry in %.0f s)", what, delay)
            return DeliveryState.PENDING
        why = what if not error.retryable else f"{what} (gave up after {delivery.attempts} attempts)"
        delivery.state = DeliveryState.DEAD
        timeline.record(session, message, timeline.DEAD_LETTERED, why, delivery)
        _refresh_message_state(session, message)
        metrics.DELIVERIES.labels(delivery.partner, "dead").inc()
        log.error("dead-lettered: %s", why)
        listeners = (message.sender, message.correlation_id, message.message_id, why)
    for listener in hub.dead_letter_listeners:
        try:
            listener(*listeners)
        except Exception:
            log.exception("dead-letter listener failed for %s", listeners[2])
    return DeliveryState.DEAD


def _refresh_message_state(session, message: Message) -> None:
    states = set(session.scalars(select(Delivery.state).where(Delivery.message_pk == message.id)))
    if DeliveryState.DEAD in states:
        message.state = MessageState.DEAD
    elif states == {DeliveryState.DELIVERED}:
        message.state = MessageState.DELIVERED
    else:
        message.state = MessageState.ACCEPTED
    message.updated_at = utcnow()


def deliver_due_messages(hub, *, owner: str, limit: int = 8) -> int:
    """Claim and deliver what is due now; returns how many deliveries were attempted."""
    with hub.sessions.begin() as session:
        ids = claim_due(session, owner=owner, limit=limit, lease_seconds=hub.settings.lease_seconds)
    for delivery_id in ids:
        deliver(hub, delivery_id)
    return len(ids)


class DeliveryWorkers:
    """A pool of threads running `deliver_due_messages` until stopped."""

    def __init__(self, hub, count: int | None = None):
        self.hub = hub
        self.count = count or hub.settings.delivery_workers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        for connector in self.hub.connectors.values():
            connector.open()
        for i in range(self.count):
            thread = threading.Thread(target=self._run, args=(f"{self.name}/w{i}",), name=f"delivery-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                done = deliver_due_messages(self.hub, owner=owner, limit=2)
            except Exception:
                log.exception("delivery worker %s: claim failed; retrying shortly", owner)
                done = 0
            if not done:
                self.hub.wait_for_work(self.hub.settings.poll_interval_seconds)

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.hub.wake_workers()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

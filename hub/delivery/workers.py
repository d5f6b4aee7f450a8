"""Delivery workers: claim due deliveries, map, sign, send through the partner's connector, record.

Network I/O happens outside any database transaction: a claim is one short transaction, the
outcome another. A worker killed between the two leaves a lease that expires; the delivery is then
sent again (at-least-once) and the partner's deduplication by message id makes the effect once.

Per-partner isolation. One dispatcher thread per hub process claims work for a pool of sender
threads, and claims for a partner only while:
  - fewer than its limit of deliveries are in flight in this process (the party's `max_in_flight`, or
    HUB_PARTNER_CONCURRENCY, default 16), and
  - its circuit is not open (hub/delivery/breaker.py): a failing partner's deliveries are not even claimed.
Partners at their limit or with an open circuit are left out of the claim query itself, so a slow
partner's backlog never hides the work of the others, and never sits claimed (leased) while waiting.

How many sender threads: at least HUB_DELIVERY_WORKERS (default 4), and at least the sum of the
partners' limits. With fewer, partners at their limit could still take
every thread (two slow partners at 2 each take all of 4), and the rest would wait for them; with that
many, every partner can always have its full share in flight whatever the others do. Threads spend
their time waiting on the network, so the extra ones cost memory, not CPU.

Lanes. The dispatcher fills the idle threads in one claim transaction, giving each thread a lane: up to
LANE_BATCH deliveries of ONE partner, sent one after the other, when that partner answers within a
second (fewer claim transactions per delivery); a slow partner, a circuit's trial, or a lease too short
for the partner's timeout get lanes of one. A lane never mixes partners, so nothing waits behind another
partner's delivery; a lane whose partner's circuit opens, or whose lease would run out before the
partner's timeout, gives the rest back unattempted (`outbox.unclaim`). When idle, the dispatcher first
looks with a plain read (`outbox.any_due`) and takes the write lock only when there is something to claim; a
partner that read found with nothing due is not looked for again when one of its lanes finishes, until a wake-up
names it or a poll interval has passed.

Consumers in this process. A consumer whose effect is a change to the database (the registry's cases, hub/apps.py
`ChangingConsumer`) reads and verifies what it is given before any transaction; its change is written in the
transaction that records the delivery's outcome: the two commit together, so the change is made exactly once,
and on SQLite the write lock is taken once for both.

Answers. A partner's synchronous answer, taken in by the sender thread, is stored with its deliveries to the
consumers in this process (the registry) already leased to the pool (hub/intake/accept.py `Lease`); the thread
hands them to an idle thread, or delivers them itself when the consumer's slots are all taken
(`_deliver_leased`): no wake-up, no claim transaction, no read of what intake just wrote.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from functools import partial
from types import SimpleNamespace
from typing import Callable, Iterable, NamedTuple

from sqlalchemy import bindparam, case, exists, or_, select, update
from sqlalchemy.exc import DBAPIError

from connectors.base import FileSender, Outbound, SendResult
from hub import metrics
from hub.evidence import timeline
from hub.store.db import utcnow
from hub.delivery.breaker import Breakers
from hub.delivery.handoff import Handoff
from hub.errors import (AnswerDeferred, ConfigError, DeliveryError, HubError, InputError, PermanentDeliveryError,
                        StylesheetRefused, TransientDeliveryError, TryLater, WriteAlone, first_line)
from hub.xml.envelope import bind, business_document, read_header
from hub.intake.accept import LeasedDelivery, SentMessage
from hub.intake.door import Arrival, refused
from hub.store import files as store
from hub.store.deferred import ChangeSession, DeferredWrites
from hub.store.models import Delivery, DeliveryState, Message, MessageState
from hub.delivery.outbox import Claimed, any_due, claim, unclaim
from hub.delivery.retry import next_delay
from hub.trust.signing import DS_NS
from hub.trust.streaming import item_depth, resign_stream
from hub.xml.safe import limits, parse_trusted, parse_untrusted, to_bytes
from hub.xml.text import for_the_record

log = logging.getLogger("hub.delivery.workers")

# A failure's reason (often a partner's error text) as kept in the timeline, last_error and the registry's case
# note: XSD-quoted values withheld, control characters removed, at most this long (hub/xml/text.py).
PARTNER_TEXT_LIMIT = 500
LANE_BATCH = 4   # deliveries of one fast partner a thread takes in one claim (see DeliveryWorkers.lane_size)


def render_for_partner(hub, message: Message, delivery: Delivery) -> bytes:
    """The bytes a partner receives (see render_mapped)."""
    return render_mapped(hub, message, delivery)[0]


def mapping_note(version) -> str:
    """How the timeline names the mapping version a delivery used (its sha256 identifies it for good)."""
    return f"mapping {version.name} sha256 {version.sha256}"


def render_mapped(hub, message: Message, delivery: Delivery):
    """The bytes a partner receives: mapped to its format and signed by the hub, and the mapping version used
    (hub/xml/mapping.py ActiveMapping, taken once so that one version maps the message from start to end), or
    None when no mapping applies.

    Without a mapping the canonical envelope travels; its business document keeps the original
    sender's signature (which covers its Binding of the header), or, when it has none (a document the
    hub mapped in from a partner's format, its header derived from that partner's signed content), is
    bound to the header and signed by the hub.
    """
    envelope = parse_trusted(message.canonical)
    if delivery.mapping:
        try:  # a version this process cannot compile, or a read it refuses: mapping again cannot mend it
            version = hub.mappings.version(delivery.mapping)
            document = version.apply(envelope)
        except (ConfigError, StylesheetRefused) as exc:
            raise PermanentDeliveryError(f"mapping {delivery.mapping}: {exc}") from None
        if delivery.schema_name:
            try:
                hub.schemas.validate(document, delivery.schema_name, what=f"mapped document for {delivery.partner}")
            except HubError as exc:
                raise PermanentDeliveryError(f"{exc} ({mapping_note(version)})") from None
        return to_bytes(hub.signer.sign(document)), version
    document = business_document(envelope)
    if document.find(f"{{{DS_NS}}}Signature") is None:
        document.getparent().replace(document, hub.signer.sign(bind(document, read_header(envelope))))
    return to_bytes(envelope), None


class SentFile(NamedTuple):
    """What a delivery of a message kept in a file sent: the file (its name in the file store) and its digest."""
    name: str
    sha256: str
    size: int


def render_file_for_partner(hub, message: Message, delivery: Delivery) -> tuple[os.PathLike, SentFile]:
    """The file a partner receives for a message kept in a file (a claim check), and what it is.

    A target with a partner schema (a route the hub renders for) gets the document signed by the hub, as
    every mapped document is: written once, from the stored file as a stream (the sender's signature
    replaced by the hub's over the same content), and re-used when the send is tried again (an ECDSA
    signature would not come out the same twice, and the partner deduplicates by identical bytes).
    Otherwise (a consumer in the hub's process) the file goes as it was received."""
    if not delivery.schema_name:
        return store.resolve(hub, message.payload_path), SentFile(message.payload_path, message.digest,
                                                                  message.payload_size or 0)
    name = store.sent_name(delivery.id, delivery.partner)
    path = store.resolve(hub, name)
    if not path.exists():
        temporary = store.incoming(hub)
        try:
            stored = store.resolve(hub, message.payload_path)
            with open(stored, "rb") as source, open(temporary, "wb") as out:
                resign_stream(source, out, hub.signer, what=f"{message.type} {message.message_id}",
                              apex_depth=item_depth(stored))
                out.flush()
                os.fsync(out.fileno())
        except HubError as exc:  # the stored document cannot be rendered: the same next time
            temporary.unlink(missing_ok=True)
            raise PermanentDeliveryError(f"signing {message.message_id} for {delivery.partner}: {exc}") from None
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        store.settle(hub, temporary, name)
    digest, size = store.sha256_of(path)
    return path, SentFile(name, digest, size)


def _sent_digest(body: bytes | SentFile) -> str:
    return body.sha256 if isinstance(body, SentFile) else timeline.sha256(body)


def _sent_columns(body: bytes | SentFile) -> dict:
    """The delivery's record of what was sent: the bytes, or the file's name in the store."""
    return {"sent_path": body.name} if isinstance(body, SentFile) else {"sent_bytes": body}


class Attempt(NamedTuple):
    """What one delivery attempt came to: the delivery's new state, the error when it failed, and the
    deliveries of the partner's answer stored leased to the worker, for it to deliver next (`take_in_answer`)."""
    state: str
    error: DeliveryError | None = None
    leased: tuple[LeasedDelivery, ...] = ()

    @property
    def partner_failed(self) -> bool:
        """A transient failure that tells about the partner's health (what the circuit breaker counts)."""
        return self.error is not None and self.error.retryable and not isinstance(self.error, AnswerDeferred)




def deliver(hub, delivery_id: int) -> str:
    """Deliver one claimed delivery and record the outcome; returns the new state."""
    return attempt(hub, delivery_id).state


class _Row(SimpleNamespace):
    """A delivery's or a message's columns as attributes, read as plain rows: the ORM's identity map and
    change tracking are not needed to send a message, and cost more than the send's own work."""

    @property
    def canonical(self) -> bytes:  # as Message.canonical
        return self.canonical_bytes or self.received_bytes


_DELIVERY_BY_ID = select(Delivery.__table__).where(Delivery.__table__.c.id == bindparam("id"))
_MESSAGE_BY_ID = select(Message.__table__).where(Message.__table__.c.id == bindparam("id"))


_MESSAGES_BY_IDS = select(Message.__table__).where(Message.__table__.c.id.in_(bindparam("ids", expanding=True)))


def _load(hub, delivery_id: int) -> tuple[_Row, _Row]:
    """The delivery and its message, as committed (read on a connection that only reads)."""
    with hub.read_engine.connect() as connection:
        delivery = _Row(**connection.execute(_DELIVERY_BY_ID, {"id": delivery_id}).one()._mapping)
        message = _Row(**connection.execute(_MESSAGE_BY_ID, {"id": delivery.message_pk}).one()._mapping)
    return delivery, message


def _with_messages(connection, delivery_rows) -> dict[int, tuple[_Row, _Row]]:
    """The deliveries (rows as the claim's update returned them) with their messages, read in one statement
    in the claim's transaction, so that the senders do not read them one by one: id -> (delivery, message)."""
    deliveries = [_Row(**row._mapping) for row in delivery_rows]
    messages = {row.id: _Row(**row._mapping) for row in
                connection.execute(_MESSAGES_BY_IDS, {"ids": sorted({d.message_pk for d in deliveries})})}
    return {delivery.id: (delivery, messages[delivery.message_pk]) for delivery in deliveries
            if delivery.message_pk in messages}


def attempt(hub, delivery_id: int, loaded: tuple[_Row, _Row] | None = None, *,
            lease_to: str | None = None) -> Attempt:
    """Deliver one claimed delivery and record the outcome. `loaded`: the delivery's and its message's rows
    when the claim read them already (`_with_messages`), else they are read here. `lease_to`: the worker,
    when it delivers the partner's answer to consumers in this process itself (`take_in_answer`)."""
    delivery, message = loaded if loaded is not None else _load(hub, delivery_id)
    party = hub.config.parties[delivery.partner]
    transport = party.transport.upper()
    started = time.perf_counter()
    sent, change = None, None
    try:
        connector = hub.connectors[delivery.partner]
        if message.payload_path is not None:  # bytes kept in a file: sent from disk by a connector that can
            if not isinstance(connector, FileSender):
                raise PermanentDeliveryError(f"{delivery.partner}'s transport ({transport}) cannot send a file")
            path, body = render_file_for_partner(hub, message, delivery)
            version = None
            result = connector.send_file(message.message_id, message.type, path, sha256=body.sha256)
        else:
            body, version = render_mapped(hub, message, delivery)
            outbound = Outbound(message.message_id, message.type, body, operation=delivery.operation)
            consume = getattr(connector, "prepare_change", None)  # a consumer in this process (connectors/local.py)
            if consume is not None:
                change = consume(outbound)
            result = _APPLIED_WITH_OUTCOME if change is not None else connector.send(outbound)
        used = f" ({mapping_note(version)})" if version is not None else ""
        sent = (body, result.answer, f"over {transport}: {result.detail}{used}")
        answer, leased = take_in_answer(hub, delivery.partner, result.answer, lease_to=lease_to,
                                        answering=SentMessage(delivery.partner, message.message_id,
                                                              message.correlation_id))
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a bug or an unexpected library error: keep the message, try again later
        log.exception("delivering %s to %s", message.message_id, delivery.partner)
        error = TransientDeliveryError(f"unexpected {type(exc).__name__}: {exc}")
    else:
        metrics.DELIVERY_SECONDS.labels(delivery.partner).observe(time.perf_counter() - started)
        try:
            after = _record_delivered(hub, delivery_id, sent, answer, _so_far(delivery), change,
                                      message.correlation_id)
        except DeliveryError as exc:  # the consumer's change failed: neither it nor the outcome was written
            return Attempt(_record_failure(hub, delivery_id, exc, transport), exc)
        metrics.DELIVERIES.labels(delivery.partner, "delivered").inc()
        if after is not None:
            _run_after_commit(after, message.message_id)
        return Attempt(DeliveryState.DELIVERED, leased=leased)
    return Attempt(_record_failure(hub, delivery_id, error, transport, sent), error)


_APPLIED_WITH_OUTCOME = SendResult(detail="consumed")  # what a consumer that changes rows with the outcome answers


def _run_after_commit(after, message_id: str) -> None:
    """What a consumer asked to do once its change is committed (send a follow-up, say): its failure is
    logged, the delivery stays delivered."""
    try:
        after()
    except Exception:
        log.exception("after consuming %s: the consumer's follow-up failed", message_id)


def take_in_answer(hub, partner: str, answer: bytes | None, *, lease_to: str | None = None,
                   answering: SentMessage | None = None) -> tuple[str | None, tuple[LeasedDelivery, ...]]:
    """A synchronous answer (an inbound route knows its root element) goes through the door like a callback
    (the "answer" door: a refusal is recorded there, once).

    Returns the answer's message id, or None when the answer is a plain acknowledgement, and those of
    its deliveries stored leased to `lease_to` (hub/intake/accept.py `Lease`; none without it). `answering`: the
    message sent, which the answer is expected to answer (hub/intake/accept.py `SentMessage`). Intake
    deduplicates, so a delivery sent again after a crash takes the same answer in only once."""
    if not answer or not answer.lstrip().startswith(b"<"):
        return None, ()  # no body, or plain text: kept as the partner's answer, nothing to take in
    try:
        root = parse_untrusted(answer, max_bytes=hub.settings.max_message_bytes, what=f"{partner}'s answer",
                               **limits(hub.settings))
    except InputError as exc:  # XML the hub cannot read (malformed, DOCTYPE, over the cap): never dropped silently
        refused(hub, "answer", exc, party=partner, data=answer)
        raise PermanentDeliveryError(f"delivered, but {partner}'s answer was refused: {exc.detail}") from None
    if hub.config.inbound_for(partner, root.tag) is None:
        return None, ()
    try:
        receipt = hub.receive(Arrival("answer", data=answer, partner=partner, lease_to=lease_to, parsed=root,
                                      answering=answering))
        return receipt.message_id, receipt.leased
    except InputError as exc:
        raise PermanentDeliveryError(f"delivered, but {partner}'s answer was refused: {exc.detail}") from None
    except TryLater as exc:
        raise AnswerDeferred(f"delivered, but {partner}'s answer cannot be taken in now: {exc.detail}",
                             retry_after=exc.retry_after) from None


def _record_sent(session, message: Message, delivery: Delivery,
                 sent: tuple[bytes | SentFile, bytes | None, str]) -> None:
    """Keep what was sent and what the partner answered, as evidence. The stored bytes are written once:
    the timeline's digests vouch for them, so a later send (a lease that expired during a slow send, an
    answer that failed to be taken in) is a SENT_AGAIN event carrying its own digests instead."""
    body, receipt, detail = sent
    attempt = f"(attempt {delivery.attempts})"
    if delivery.sent_bytes is None and delivery.sent_path is None:
        for column, value in _sent_columns(body).items():
            setattr(delivery, column, value)
        delivery.partner_receipt = receipt
        timeline.record(session, message, timeline.SENT, f"to {delivery.partner} {detail} {attempt}", delivery,
                        digest=_sent_digest(body))
        if receipt:  # kept byte for byte as the partner answered; its digest goes into the evidence chain
            timeline.record(session, message, timeline.PARTNER_RECEIPT,
                            f"{len(receipt)} bytes from {delivery.partner}", delivery)
        return
    answered = f"; answer sha256 {timeline.sha256(receipt)}" if receipt else ""
    timeline.record(session, message, timeline.SENT_AGAIN,
                    f"to {delivery.partner} {detail} {attempt}: sha256 {_sent_digest(body)}{answered} "
                    "(the first send's bytes are the ones kept)", delivery)


class _SoFar(NamedTuple):
    """What recording a delivered outcome depends on in the delivery's row (read with `_SENT_SO_FAR`)."""
    message_pk: int
    partner: str
    attempts: int
    state: str
    first_send: bool   # nothing sent kept yet (sent_bytes and sent_path both empty)


class _Delivered(NamedTuple):
    """One delivered outcome to record (`_write_delivered`). `read`: the delivery's row as the sender read it
    after the claim, or None; the write checks that it still holds (else it reads the row again). `change`: a
    consumer's change to write with it (connectors/local.py `prepare_change`), and `conversation`, the delivered
    message's correlation id, which orders the changes of a batch."""
    delivery_id: int
    sent: tuple[bytes | SentFile, bytes | None, str]
    answer: str | None
    read: _SoFar | None = None
    change: Callable | None = None
    conversation: str | None = None


def _record_delivered(hub, delivery_id: int, sent: tuple[bytes | SentFile, bytes | None, str],
                      answer: str | None, read: _SoFar | None = None, change: Callable | None = None,
                      conversation: str | None = None) -> Callable[[], None] | None:
    """The delivery DELIVERED, what was sent and answered kept (as `_record_sent` does), the message's state
    refreshed: plain rows and a handful of statements for all the outcomes waiting in this process, as this is
    the write every delivery makes (a batch writer of hub/store/group_commit.py: the senders' outcomes are
    written together and committed once).

    With `change`, a consumer's change (in this process: the registry's case moved by an answer) is written in
    the same transaction, so that the two commit together or not at all: an answer is applied exactly once, and
    the write lock is taken once. Returns what the consumer asked to run once that is committed; raises the
    DeliveryError that refused the change (then nothing is written)."""
    return hub.committer.store(_write_delivered, _Delivered(delivery_id, sent, answer, read, change, conversation))


def _so_far(delivery: _Row) -> _SoFar:
    return _SoFar(delivery.message_pk, delivery.partner, delivery.attempts, delivery.state,
                  delivery.sent_bytes is None and delivery.sent_path is None)


_DELIVERIES = Delivery.__table__
_SENT_SO_FAR = select(_DELIVERIES.c.id, _DELIVERIES.c.message_pk, _DELIVERIES.c.partner, _DELIVERIES.c.attempts,
                      _DELIVERIES.c.state,
                      (_DELIVERIES.c.sent_bytes.is_(None) & _DELIVERIES.c.sent_path.is_(None)).label("first_send")
                      ).where(_DELIVERIES.c.id.in_(bindparam("ids", expanding=True)))
_KEPT_RECEIPT = select(_DELIVERIES.c.partner_receipt).where(_DELIVERIES.c.id == bindparam("delivery_id"))
_UPDATE_DELIVERY = update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("delivery_id"))  # SET: the keys given
# The same, only while the row is still as the sender read it (the attempt counted by its claim, the state, and
# whether a send is kept already): a lease that ran out meanwhile and another claim of the delivery change that.
_AS_READ = (_DELIVERIES.c.attempts == bindparam("read_attempts"), _DELIVERIES.c.state == bindparam("read_state"))
_UPDATE_DELIVERY_IF_FIRST = _UPDATE_DELIVERY.where(*_AS_READ, _DELIVERIES.c.sent_bytes.is_(None),
                                                   _DELIVERIES.c.sent_path.is_(None))
_UPDATE_DELIVERY_IF_AGAIN = _UPDATE_DELIVERY.where(*_AS_READ, or_(_DELIVERIES.c.sent_bytes.is_not(None),
                                                                  _DELIVERIES.c.sent_path.is_not(None)))


def _message_state_now():
    """The message's state from its deliveries' states, in SQL (as `message_state`; a message written here has
    at least one delivery)."""
    of_message = Delivery.__table__.c.message_pk == Message.__table__.c.id
    some = partial(exists().where, of_message)
    return case((some(_DELIVERIES.c.state == DeliveryState.DEAD), MessageState.DEAD),
                (~some(_DELIVERIES.c.state != DeliveryState.DELIVERED), MessageState.DELIVERED),
                else_=MessageState.ACCEPTED)


# one statement for the messages of a whole batch (an executemany was one statement per message for the database)
_REFRESH_MESSAGES = (update(Message.__table__).where(Message.__table__.c.id.in_(bindparam("messages", expanding=True)))
                     .values(state=_message_state_now(), updated_at=bindparam("now")))


def _write_delivered(connection, outcomes: list[_Delivered]) -> list[Callable[[], None] | None]:
    """`_record_delivered`'s statements for a batch of outcomes, built once: an update of each delivery (made
    on condition that its row is as the sender read it; the row read again when it is not), one insert of
    all their events, and one update setting their messages' states from their deliveries' (as
    `message_state`). The outcomes are taken in order, each seeing what the ones before it wrote (the same
    delivery twice: its second send is SENT_AGAIN), so the rows and events are those that writing them one
    by one would give.

    In a batch, the updates made on condition go as one executemany per statement, checked by their rows
    updated in all: when some delivery changed since its sender read it (a lease that ran out, another
    claim), the batch is written again one outcome at a time (`WriteAlone`), where each reads its row again.

    The consumers' changes come first (`_apply`); each outcome's result is what its consumer asked to run once
    committed, or None."""
    results: list[Callable[[], None] | None] = [None] * len(outcomes)
    changing = sorted((index for index, outcome in enumerate(outcomes) if outcome.change is not None),
                      key=lambda index: outcomes[index].conversation or "")
    if changing:
        applied = _apply(connection, [outcomes[index].change for index in changing], alone=len(outcomes) == 1)
        for index, after in zip(changing, applied):
            results[index] = after
    unread = sorted({o.delivery_id for o in outcomes if o.read is None})
    so_far: dict[int, _SoFar] = {}
    if unread:
        so_far = {row.id: _SoFar(*row[1:]) for row in connection.execute(_SENT_SO_FAR, {"ids": unread})}
    events: list[dict] = []
    kept_receipts: dict[int, bytes | None] = {}  # receipts first kept by this batch
    on_condition: dict[tuple, list[dict]] = {}  # (statement, keys) -> the parameters of its updates, in a batch
    for delivery_id, (body, receipt, detail), answer, read, *_change in outcomes:
        checked = delivery_id not in so_far and read is not None
        row = read if checked else so_far.get(delivery_id)
        if row is None:
            row = _read_so_far(connection, delivery_id)
        for _ in range(2):
            now = utcnow()
            values = {"lease_owner": None, "lease_expires_at": None}
            if row.state != DeliveryState.DELIVERED:
                values.update(state=DeliveryState.DELIVERED, delivered_at=now, last_error=None)
            if row.first_send:
                values.update(**_sent_columns(body), partner_receipt=receipt)
            if not checked:
                connection.execute(_UPDATE_DELIVERY, {"delivery_id": delivery_id, **values})
                break
            statement = _UPDATE_DELIVERY_IF_FIRST if row.first_send else _UPDATE_DELIVERY_IF_AGAIN
            parameters = {"delivery_id": delivery_id, "read_attempts": row.attempts, "read_state": row.state,
                          **values}
            if len(outcomes) > 1:
                on_condition.setdefault((statement, tuple(parameters)), []).append(parameters)
                break
            if connection.execute(statement, parameters).rowcount == 1:
                break
            row, checked = _read_so_far(connection, delivery_id), False  # changed since it was read
        so_far[delivery_id] = row._replace(state=DeliveryState.DELIVERED, first_send=False)
        event = partial(timeline.row, row.message_pk, at=now, delivery_id=delivery_id)
        attempt_note = f"(attempt {row.attempts})"
        if row.first_send:
            events.append(event(timeline.SENT, f"to {row.partner} {detail} {attempt_note}",
                                digest=_sent_digest(body)))
            if receipt:
                events.append(event(timeline.PARTNER_RECEIPT, f"{len(receipt)} bytes from {row.partner}",
                                    digest=timeline.sha256(receipt)))
            kept_receipt = kept_receipts[delivery_id] = receipt
        else:
            answered = f"; answer sha256 {timeline.sha256(receipt)}" if receipt else ""
            events.append(event(timeline.SENT_AGAIN, f"to {row.partner} {detail} {attempt_note}: sha256 "
                                f"{_sent_digest(body)}{answered} (the first send's bytes are the ones kept)"))
            kept_receipt = None
            if answer:
                kept_receipt = (kept_receipts[delivery_id] if delivery_id in kept_receipts else
                                connection.scalar(_KEPT_RECEIPT, {"delivery_id": delivery_id}))
        if answer:  # vouches for the answer as kept (the first send's)
            events.append(event(timeline.ANSWERED, f"{row.partner} answered with {answer}",
                                digest=timeline.sha256(kept_receipt)))
    for (statement, _keys), parameters in on_condition.items():
        updated = connection.execute(statement, parameters).rowcount
        if updated != len(parameters):
            raise WriteAlone(f"{len(parameters) - updated} of {len(parameters)} deliveries changed since read")
    timeline.insert_rows(connection, events)
    now = utcnow()
    connection.execute(_REFRESH_MESSAGES, {"messages": sorted({row.message_pk for row in so_far.values()}), "now": now})
    return results


def _apply(connection, changes: list[Callable], *, alone: bool) -> list[Callable[[], None] | None]:
    """Consumers' changes, each on an ORM session joined to the outcomes' transaction: returns what each asked
    to run once committed. They are applied in the order given (their conversations': two transactions changing
    the same rows lock them in the same order), and the rows they write without reading back are sent together
    after the last one (hub/store/deferred.py).

    A change refused (a DeliveryError, or rows the database refuses) must leave nothing of itself, so the
    transaction is not kept: in a batch, it is written again one outcome at a time (`WriteAlone`); alone, the
    refusal is raised, and answers its own item (hub/store/group_commit.py). A refused database write is a
    transient refusal: the delivery is retried, then dead-lettered, never sent again forever. A savepoint per
    change would confine it too, at two more round trips for every change: a refusal is rare, a change is not."""
    try:
        batch = DeferredWrites()
        results = []
        for change in changes:
            with ChangeSession(batch, bind=connection, join_transaction_mode="rollback_only",
                               expire_on_commit=False) as session:
                results.append(change(session))
                session.flush()
        batch.send(connection)
    except DeliveryError as exc:
        if alone:
            raise
        raise WriteAlone(f"a consumer's change was refused: {exc}") from exc
    except DBAPIError as exc:
        if alone and not exc.connection_invalidated:
            raise TransientDeliveryError(f"the consumer's change could not be written: {first_line(exc.orig)}") from exc
        raise
    return results


def _read_so_far(connection, delivery_id: int) -> _SoFar:
    return _SoFar(*connection.execute(_SENT_SO_FAR, {"ids": [delivery_id]}).one()[1:])


def _record_failure(hub, delivery_id: int, error: DeliveryError, transport: str,
                    sent: tuple[bytes | SentFile, bytes | None, str] | None = None) -> str:
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
        reason = for_the_record(error.reason, PARTNER_TEXT_LIMIT)  # a partner's words, kept and shown: bounded
        what = f"delivering {message.message_id} to {delivery.partner} over {transport}: {reason}"
        delivery.lease_owner, delivery.lease_expires_at, delivery.last_error = None, None, reason
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


def message_state(delivery_states: set[str]) -> str:
    """A message is DEAD when one of its deliveries is, DELIVERED when all are, else ACCEPTED."""
    if DeliveryState.DEAD in delivery_states:
        return MessageState.DEAD
    if delivery_states == {DeliveryState.DELIVERED}:
        return MessageState.DELIVERED
    return MessageState.ACCEPTED


def _refresh_message_state(session, message: Message) -> None:
    message.state = message_state(set(session.scalars(select(Delivery.state)
                                                      .where(Delivery.message_pk == message.id))))
    message.updated_at = utcnow()


def deliver_due_messages(hub, *, owner: str, limit: int = 8) -> int:
    """Claim and deliver what is due now, one after the other, in the calling thread (no pool, no
    per-partner limits, no breaker: for tools and tests); returns how many deliveries were attempted."""
    with hub.sessions.begin() as session:
        claimed = claim(session, owner=owner, limit=limit, lease_seconds=hub.settings.lease_seconds)
    for delivery_id, _partner in claimed:
        deliver(hub, delivery_id)
    return len(claimed)


class PartnerSlots:
    """Deliveries in flight per partner in this process, each partner capped at its limit. Thread-safe."""

    def __init__(self, limits: dict[str, int]):
        self.limits = {partner: max(1, limit) for partner, limit in limits.items()}
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        for partner in self.limits:
            metrics.IN_FLIGHT.labels(partner).set(0)

    def take(self, partner: str) -> bool:
        with self._lock:
            if self._counts.get(partner, 0) >= self.limits[partner]:
                return False
            self._counts[partner] = self._counts.get(partner, 0) + 1
            metrics.IN_FLIGHT.labels(partner).set(self._counts[partner])
            return True

    def release(self, partner: str) -> None:
        with self._lock:
            self._counts[partner] = max(0, self._counts.get(partner, 0) - 1)
            metrics.IN_FLIGHT.labels(partner).set(self._counts[partner])

    def full(self) -> set[str]:
        with self._lock:
            return {partner for partner, count in self._counts.items() if count >= self.limits[partner]}

    def free(self, partners: Iterable[str]) -> dict[str, int]:
        """The slots free now of each of `partners` that has one."""
        with self._lock:
            return {partner: self.limits[partner] - self._counts.get(partner, 0) for partner in partners
                    if self._counts.get(partner, 0) < self.limits[partner]}


class DeliveryWorkers:
    """A dispatcher thread claiming due deliveries within each partner's limits, and a pool of sender
    threads delivering them (see the module docstring for the design and the thread count)."""

    def __init__(self, hub, count: int | None = None):
        self.hub = hub
        settings = hub.settings
        partners = list(hub.config.parties)
        self.slots = PartnerSlots({code: party.max_in_flight or settings.partner_concurrency
                                   for code, party in hub.config.parties.items()})
        self.count = count or max(settings.delivery_workers, sum(self.slots.limits.values()))
        self.breakers = Breakers(partners, failures=settings.breaker_failures, seconds=settings.breaker_seconds)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.owner = f"{self.name}/dispatch"  # the leases of this pool's deliveries
        self._stop = threading.Event()
        # lanes to send: when claimed, the deliveries, and the claim's rows read so far (id -> delivery, message);
        # the thread idle the shortest time takes the next (hub/delivery/handoff.py)
        self._jobs: Handoff[tuple[float, list[Claimed], dict] | None] = Handoff()
        self._lock = threading.Lock()
        self._busy = 0                       # lanes claimed and not yet finished (queued or being sent)
        self._probe_first = False            # the last claim found nothing new: look with a read first
        self._passed_over: set[str] = set()  # partners whose due deliveries the last claim had to leave
        self._freed_for: set[str] = set()    # partners of the lanes finished since the dispatcher last looked
        self._found_empty: dict[str, float] = {}  # partner -> when a look last found nothing due for it
        self._seconds: dict[str, float] = {}  # recent time of one delivery per partner (moving average)
        self._dispatcher: threading.Thread | None = None
        self._senders: list[threading.Thread] = []

    def start(self) -> None:
        for connector in self.hub.connectors.values():
            connector.open()
        self._stop.clear()
        self._senders = [self._spawn(self._send, f"delivery-{i}") for i in range(self.count)]
        self._dispatcher = self._spawn(self._dispatch, "delivery-dispatch")

    @staticmethod
    def _spawn(target, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    # -- the dispatcher: claims what idle threads can send now ---------------------------------------
    def _dispatch(self) -> None:
        owner = self.owner
        look = True  # whether the next round claims (else it only waits for a wake-up that may bring work)
        seen = self.hub.work_generation
        while not self._stop.is_set():
            more = False
            if look:
                seen = self.hub.work_generation  # a wake-up during the claim makes the next wait return at once
                try:
                    more = self._claim_for_idle_threads(owner)
                except DBAPIError as exc:  # the database away for a moment: one line, not a traceback a second
                    log.warning("delivery dispatcher %s: claim failed (%s); retrying shortly", owner, first_line(exc))
                    self._stop.wait(self.hub.settings.poll_interval_seconds)
                    continue
                except Exception:
                    log.exception("delivery dispatcher %s: claim failed; retrying shortly", owner)
                    self._stop.wait(self.hub.settings.poll_interval_seconds)
                    continue
            if more:
                continue
            timeout = self.hub.settings.poll_interval_seconds
            trial_in = self.breakers.next_trial_in()
            if trial_in is not None:
                timeout = min(timeout, trial_in + 0.01)
            seen, woken = self.hub.wait_for_work(timeout, seen=seen, stop=self._stop)
            with self._lock:
                freed, self._freed_for = self._freed_for, set()
            look = self._worth_a_look(woken, freed)

    def _worth_a_look(self, woken: set[str] | None, freed: set[str] = frozenset()) -> bool:
        """Look for work after a wake-up (`woken`: the partners it named, None for anyone) or lanes finished
        (`freed`: their partners, whose slots and threads are free again)?

        Not for a wake-up that named only partners this process cannot send to now (at their in-flight limit,
        or their circuit open): under a backlog, intake wakes the dispatcher hundreds of times a second for the
        very partner whose slots are all taken; the freed slot brings its next claim. Not for a lane finished
        either when its partner was found with nothing due a moment ago (`_known_empty`) and the last claim left
        no other partner's work: a partner's answers delivered to the registry in this process are leased to the
        worker that took them in (`_deliver_leased`), and each of their lanes finished made a claim, or a read,
        that found nothing. A wake-up naming a partner forgets that it was found empty."""
        if woken is None:
            self._found_empty.clear()
            return True
        for partner in woken:
            self._found_empty.pop(partner, None)
        if woken - self.slots.full() - self.breakers.blocked():
            return True
        return bool(freed) and (bool(self._passed_over) or not all(map(self._known_empty, freed)))

    def _known_empty(self, partner: str) -> bool:
        """Whether a look found nothing due for `partner` less than a poll interval ago (and no wake-up named it
        since). A delivery falling due without a wake-up (a retry's time come, a lease run out) is found within a
        poll interval, as when the workers are idle."""
        found = self._found_empty.get(partner)
        return found is not None and time.monotonic() - found < self.hub.settings.poll_interval_seconds

    def _found_nothing_for(self, partners: Iterable[str]) -> None:
        now = time.monotonic()
        for partner in partners:
            self._found_empty[partner] = now

    def lane_size(self, partner: str) -> int:
        """How many of a partner's deliveries one thread takes in one claim, sent one after the other:
        LANE_BATCH for a partner that answers fast (fewer claim transactions), one for a slow partner
        (whose leases must not run out while it waits in line), and one for a circuit's trial."""
        seconds = self._seconds.get(partner)
        if seconds is None or seconds > 1 or self.breakers.state(partner) != "closed":
            return 1
        # the last of the lane must still find a lease longer than the partner's timeout (`_may_go_on`)
        lease_left = self.hub.settings.lease_seconds - LANE_BATCH * seconds
        return LANE_BATCH if lease_left > self.hub.config.parties[partner].timeout_seconds + 1 else 1

    def _claim_for_idle_threads(self, owner: str) -> bool:
        """One claim transaction filling the idle threads, each with a lane of one partner's deliveries;
        True when the claim's window was full of new work (another claim may find more right away)."""
        with self._lock:
            idle = self.count - self._busy
        if idle <= 0:
            return False
        blocked = self.breakers.blocked()
        free = self.slots.free(party for party in self.hub.config.parties
                               if party not in blocked and not self._known_empty(party))
        if not free:
            return False
        excluded = set(self.hub.config.parties) - set(free)
        # the partners that can take work now, each looked up on its own (outbox.py), and of each no more
        # deliveries read than its free slots' lanes can take: under one partner's backlog, a claim read a
        # window's worth of its rows (a hundred) to take a lane or two. (On PostgreSQL, the rows another process's
        # claim holds now are skipped before they count: each lookup locks what it returns.)
        sizes = {partner: self.lane_size(partner) for partner in free}
        partners = {partner: min(slots, idle) * sizes[partner] for partner, slots in free.items()}
        # look with a plain read first (no write transaction when there is nothing), unless the last claim had
        # to leave due deliveries of a partner that can take them now (a backlog: the read would find them)
        if self._probe_first and not (self._passed_over - excluded):
            with self.hub.read_engine.connect() as connection:
                if not any_due(connection, partners=partners):
                    # (a claim finding nothing does not say as much: on PostgreSQL it skips the rows another
                    # process's claim holds, and more may be due behind them)
                    self._found_nothing_for(partners)
                    return False
        lanes: dict[str, list[list[Claimed]]] = {}
        opened: list[str] = []
        passed_over = 0
        passed: set[str] = set()

        def take(partner: str, delivery_id: int) -> bool:
            nonlocal passed_over
            mine = lanes.get(partner)
            if mine and len(mine[-1]) < sizes[partner]:
                mine[-1].append(Claimed(delivery_id, partner))
                return True
            if len(opened) < idle and self.slots.take(partner):
                if self.breakers.admit(partner):
                    opened.append(partner)
                    lanes.setdefault(partner, []).append([Claimed(delivery_id, partner)])
                    return True
                self.slots.release(partner)
            passed_over += 1
            passed.add(partner)
            return False

        window = idle * LANE_BATCH
        claimed_at = time.monotonic()
        try:
            with self.hub.engine.begin() as connection:  # Core statements: no ORM session work per claim
                # the claimed rows come back from the claim's update, and their messages in one more read: the
                # senders need not read them one by one (where UPDATE ... RETURNING is missing, they do)
                rows = {} if connection.dialect.update_returning else None
                claimed = claim(connection, owner=owner, limit=window, lease_seconds=self.hub.settings.lease_seconds,
                                partners=partners, take=take, rows=rows)
                loaded = _with_messages(connection, rows.values()) if rows else {}
        except BaseException:
            for partner in opened:  # nothing was claimed: give the slots (and a trial) back
                self.slots.release(partner)
                self.breakers.neutral(partner)
            raise
        self._probe_first = not claimed or passed_over > 0
        self._passed_over = passed
        with self._lock:
            self._busy += len(opened)
        for partner_lanes in lanes.values():
            for lane in partner_lanes:
                self._jobs.put((claimed_at, lane, loaded))
        return len(claimed) == window or passed_over > 0

    # -- the senders -----------------------------------------------------------------------------------
    def _send(self) -> None:
        while True:
            lane = self._jobs.get()
            if lane is None:
                return
            claimed_at, lane, loaded = lane
            partner = lane[0].partner
            try:
                for n, item in enumerate(lane):
                    if n and not self._may_go_on(partner, claimed_at):
                        self._give_back(lane[n:])
                        break
                    self._deliver_leased(self._deliver(item, loaded.pop(item.id, None)))
            finally:
                self.slots.release(partner)
                with self._lock:
                    self._busy -= 1
                    self._freed_for.add(partner)
                self.hub.wake_workers(())  # a slot and a thread are free: the dispatcher may claim again

    def _deliver(self, item: Claimed, loaded: tuple[_Row, _Row] | None = None) -> tuple[LeasedDelivery, ...]:
        """Deliver one claimed delivery; returns the deliveries of the partner's answer stored leased to
        this worker (`_deliver_leased`)."""
        started = time.monotonic()
        try:
            outcome = attempt(self.hub, item.id, loaded, lease_to=self.owner)
        except Exception:  # recording the outcome failed (database away): the lease expires, it is sent again
            log.exception("delivery %s to %s: recording the outcome failed; it will be sent again", item.id,
                          item.partner)
            self.breakers.neutral(item.partner)
            return ()
        took = time.monotonic() - started
        previous = self._seconds.get(item.partner)
        self._seconds[item.partner] = took if previous is None else 0.7 * previous + 0.3 * took
        if outcome.state == DeliveryState.DELIVERED:
            self.breakers.succeeded(item.partner)
        elif outcome.partner_failed:
            self.breakers.failed(item.partner)
        else:
            self.breakers.neutral(item.partner)
        return outcome.leased

    def _deliver_leased(self, leased: tuple[LeasedDelivery, ...]) -> None:
        """A partner's answer goes on to the consumers in this process (the registry) from the thread that took
        it in, its deliveries stored leased to this worker (hub/intake/accept.py `Lease`): no wake-up, no claim,
        no read of what intake just wrote. Handed to an idle thread when the consumer has a free slot (the
        thread that took the answer in goes on with its own partner meanwhile), else delivered by this thread,
        which holds its own partner's slot meanwhile (a slow consumer slows the answers' partner, not the others).
        When the consumer's circuit is not closed, the delivery is given back for the dispatcher to claim."""
        for leased_delivery in leased:
            item, rows = Claimed(leased_delivery.id, leased_delivery.partner), (_Row(**leased_delivery.delivery),
                                                                                _Row(**leased_delivery.message))
            try:
                if self._stop.is_set() or not self.breakers.admit(item.partner):
                    self._give_back([item])
                    self.hub.wake_workers([item.partner])
                elif self.slots.take(item.partner):
                    with self._lock:
                        self._busy += 1
                    self._jobs.put((time.monotonic(), [item], {item.id: rows}))
                else:
                    self._deliver(item, rows)
            except Exception:  # a defect: the sender thread goes on, and the lease runs out (it is sent later)
                log.exception("delivery %s to %s: handing on the answer failed", item.id, item.partner)

    def _may_go_on(self, partner: str, claimed_at: float) -> bool:
        """Send the next delivery of a lane? Not when the hub stops, when the partner's circuit opened, or
        when its lease could run out before the partner's timeout (another worker could then send it too)."""
        lease_left = self.hub.settings.lease_seconds - (time.monotonic() - claimed_at)
        return (not self._stop.is_set() and self.breakers.state(partner) == "closed"
                and lease_left > self.hub.config.parties[partner].timeout_seconds + 1)

    def _give_back(self, items: list[Claimed]) -> None:
        try:
            with self.hub.engine.begin() as connection:
                unclaim(connection, [item.id for item in items], owner=self.owner)
        except Exception:  # their leases expire instead
            log.exception("giving back %d claimed deliveries to %s failed", len(items), items[0].partner)

    def stop(self, timeout: float = 10) -> None:
        """Stop claiming, let the senders finish or give back what was claimed (within `timeout`), and end
        the threads. What is still claimed after that keeps its lease, which expires: it is sent later."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.hub.wake_workers()
        if self._dispatcher is not None:
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        for _ in self._senders:
            self._jobs.put(None)  # after whatever was claimed: that is sent first
        for thread in self._senders:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._dispatcher, self._senders = None, []



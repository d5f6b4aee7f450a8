"""Intake: from bytes at the door to a durable, routed message with a signed receipt.

    size cap -> hardened parse -> validate (XSD) -> verify the sender's signature (hub.trust.certificates:
    pinned certificate or CA, algorithms and reference fixed in advance; the signer must be the sender)
    -> [canonical: the header must be the document's signed Binding (hub/xml/envelope.py)]
    -> [partner format: map the signed document to canonical: its header comes from signed content]
    -> the CorrelationId must be the document's own case reference -> route
    -> [an answer: correlate to the message it answers] -> deduplicate
    -> store bytes + state + receipt + outbox rows + timeline in ONE commit (shared with the other
       intakes waiting then: `store_accepted` writes them all in three statements)

After verification only the signed content is used: the type check, the routing conditions, the
mapping of a partner document, and the canonical form stored for delivery (`canonical_bytes`,
rebuilt from the header and the signed document) never read the tree as received. The header of a
canonical envelope is not signed itself: every field the hub acts on (MessageId, CorrelationId,
InReplyTo, Type, Sender, Recipient) must equal the signed document's Binding, or the message is
refused (HeaderMismatch, 400, naming the field). The bytes as received are kept as evidence
(`received_bytes`).

An answer (a route marked `answer: true`) must carry InReplyTo naming a message the hub delivered to
its sender, in the same case, whichever door it came through (`_correlate`); the Recipient must be one
of the route's recipients.

Accepted means durable: the receipt is returned only after that commit. The same message id from
the same sender with the same bytes gets the first receipt again and is not processed twice; the
same id with other bytes is refused (409).
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import operator
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from lxml import etree
from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from hub.concurrency import run_blocking
from hub.intake import backpressure

from hub.evidence import timeline
from hub.access.rules import check_may_send
from hub.store.db import utcnow
from hub.store.row_inserts import RowInsert
from hub.errors import (DuplicateConflict, InputError, NotAllowed, NotRoutable, PermanentDeliveryError, Problem,
                        SchemaInvalid, UnknownCorrelation)
from hub.store.models import Delivery, DeliveryState, Event, Message, MessageState
from hub.trust.receipts import build_receipt
from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import DS_NS
from hub.xml.envelope import Header, business_document, check_binding, check_case, read_header
from hub.xml.safe import limits, parse_untrusted, to_bytes

_E = f"{{{ENVELOPE_NS}}}"


@dataclass(frozen=True)
class Receipt:
    """The hub's signed acceptance of one message (the only thing the hub calls a receipt)."""
    message_id: str
    sender: str
    type: str            # the message type (the canonical header's)
    body: bytes          # the signed receipt XML
    duplicate: bool      # True when this id and these bytes had already been accepted
    leased: tuple["LeasedDelivery", ...] = ()  # deliveries stored leased to the caller (`Lease`)


def accept_canonical(hub, data: bytes, *, caller: str | None = None, submitted_by: str | None = None,
                     lease_to: str | None = None) -> Receipt:
    """Intake of a signed canonical envelope (POST /api/v1/messages, the registry; called by the door,
    hub/intake/door.py). A `caller` (the party an API token or the registry speaks for) may only submit
    messages whose header names it as Sender; `submitted_by` (the API token) is named by the RECEIVED event;
    `lease_to`: see `Lease`."""
    envelope = parse_untrusted(data, max_bytes=hub.settings.max_message_bytes, **limits(hub.settings))
    if envelope.tag != f"{_E}Message":
        raise SchemaInvalid(f"expected a canonical envelope {{{ENVELOPE_NS}}}Message, got {envelope.tag}",
                            [Problem("wrong root element", line=envelope.sourceline, path="/*")])
    return _accept_envelope(hub, envelope, data, caller=caller, submitted_by=submitted_by, lease_to=lease_to)


def _accept_envelope(hub, envelope: etree._Element, data: bytes, *, caller: str | None,
                     submitted_by: str | None, lease_to: str | None = None,
                     answering: SentMessage | None = None) -> Receipt:
    """A parsed canonical envelope: validated, the sender's signature verified, the header checked against
    the signed Binding, then stored and routed."""
    hub.schemas.validate(envelope, what="message")
    header = read_header(envelope)
    if caller is not None and header.sender != caller:
        raise NotAllowed(f"submitting a message with Sender {header.sender}: the caller speaks for {caller}",
                         [Problem("Sender is not the caller's party", path="/Message/Header/Sender")])
    if not hub.trust.knows(header.sender):
        raise NotAllowed(f"sender {header.sender!r} is not a known party",
                         [Problem("unknown sender", path="/Message/Header/Sender")])
    document = business_document(envelope)
    signed = hub.trust.verify(document, header.sender)
    # From here on only the signed content is used: the type check, the routing conditions and the
    # canonical form that delivery maps all read `verified`, never the tree as received.
    _check_type_matches_body(header, signed)
    check_binding(header, signed)
    check_case(header, signed)
    verified = _verified_envelope(envelope, signed, document.find(f"{{{DS_NS}}}Signature"))
    steps = [(timeline.RECEIVED, f"{len(data)} bytes{_by(submitted_by)}"),
             (timeline.VALIDATED, "envelope and business document"),
             (timeline.VERIFIED, f"signed by {header.sender}")]
    canonical = to_bytes(verified)  # stored only when it differs from what arrived (comments, spacing, ...)
    return _store_and_route(hub, header, verified, data, None if canonical == data else canonical, steps,
                            lease_to=lease_to, answering=answering)


def _verified_envelope(envelope: etree._Element, signed: etree._Element,
                       signature: etree._Element | None) -> etree._Element:
    """The canonical envelope rebuilt from its header and the signed content alone (comments, anything
    the signature does not cover, are gone), the sender's signature put back (see `_resigned`)."""
    rebuilt = etree.Element(envelope.tag, nsmap=envelope.nsmap)
    rebuilt.append(copy.deepcopy(envelope.find(f"{_E}Header")))
    body = etree.SubElement(rebuilt, f"{_E}Body")
    body.append(_resigned(signed, signature))
    return rebuilt


def _resigned(signed: etree._Element, signature: etree._Element | None) -> etree._Element:
    """The signed content with the sender's signature put back as its last child, where it still
    verifies (the enveloped transform removes it wherever it sits): a partner's signature must travel
    on with what it covers (the registry checks artefacts such as CDG's acknowledgement again)."""
    document = copy.deepcopy(signed)
    if signature is not None:
        kept = copy.deepcopy(signature)
        kept.tail = None
        document.append(kept)
    return document


def accept_partner_document(hub, partner: str, data: bytes, *, submitted_by: str | None = None,
                            lease_to: str | None = None, root: etree._Element | None = None,
                            answering: SentMessage | None = None) -> Receipt:
    """Intake of a partner's document at its own door (REST callback, SOAP, SFTP file, synchronous answer):
    its own format, verified as the partner's then mapped to canonical; or a canonical envelope, taken in as
    on the canonical door with the partner as the caller (its Sender, its signature, its signed Binding).
    `submitted_by` (the API token, when one submitted it) is named by the RECEIVED event; `lease_to`: see `Lease`;
    `root`: `data` already parsed with intake's limits (it is changed here); `answering`: see `SentMessage`."""
    party = hub.config.parties.get(partner)
    if party is None or party.transport == "local":
        raise NotAllowed(f"{partner!r} is not a partner that sends documents to the hub")
    if root is None:
        root = parse_untrusted(data, max_bytes=hub.settings.max_message_bytes, **limits(hub.settings))
    if root.tag == f"{_E}Message":  # the partner answers in the canonical form: its header must be signed
        return _accept_envelope(hub, root, data, caller=partner, submitted_by=submitted_by, lease_to=lease_to,
                                answering=answering)
    inbound = hub.config.inbound_for(partner, root.tag)
    if inbound is None:
        raise NotRoutable(f"{partner} may not send a {root.tag} document to the hub",
                          [Problem("no inbound route for this root element", line=root.sourceline, path="/*")])
    hub.schemas.validate(root, inbound.schema_, what=f"{partner} document")
    signed = _resigned(hub.trust.verify(root, partner), root.find(f"{{{DS_NS}}}Signature"))
    try:  # mapped from the signed content only
        envelope = hub.mappings.apply(inbound.mapping, signed)
    except PermanentDeliveryError as exc:
        raise InputError(f"{partner} document could not be mapped to the canonical format: {exc}") from None
    hub.schemas.validate(envelope, what=f"canonical form of the {partner} document")
    header = read_header(envelope)
    if header.sender != partner:
        raise NotAllowed(f"the {partner} document maps to sender {header.sender!r}")
    check_case(header, business_document(envelope))
    steps = [(timeline.RECEIVED, f"{len(data)} bytes from {partner}{_by(submitted_by)}"),
             (timeline.VALIDATED, f"against {inbound.schema_}"), (timeline.VERIFIED, f"signed by {partner}"),
             (timeline.MAPPED_IN, f"with {inbound.mapping}")]
    return _store_and_route(hub, header, envelope, data, to_bytes(envelope), steps, lease_to=lease_to,
                            answering=answering)


def _by(submitted_by: str | None) -> str:
    return f", submitted by {submitted_by}" if submitted_by else ""


def _check_type_matches_body(header: Header, document: etree._Element) -> None:
    local_name = etree.QName(document).localname
    if header.type != local_name:
        raise SchemaInvalid(f"header Type {header.type!r} does not match the body's document {local_name!r}",
                            [Problem("Type mismatch", line=document.sourceline, path="/Message/Header/Type")])


def _store_and_route(hub, header: Header, envelope: etree._Element, data: bytes, canonical: bytes | None,
                     steps, *, lease_to: str | None = None, answering: SentMessage | None = None) -> Receipt:
    route = hub.config.route_for(header.type)
    if route is None:
        raise NotRoutable(f"no route for message type {header.type!r}",
                          [Problem("unknown message type", path="/Message/Header/Type")])
    check_may_send(hub.config, header.sender, header.type)
    if header.sender not in route.from_:
        raise NotAllowed(f"{header.sender} may not send {header.type}")
    check_against_route(route, header)
    targets = [target for target in route.to if target.applies_to(envelope)]
    if not targets:
        raise NotRoutable(f"no recipient of {header.type} applies to this message (every route condition is false)",
                          [Problem("no route condition holds", path="/Message/Body")])
    if header.in_reply_to:
        steps = (*steps, run_blocking(_correlated, hub, header, answering))
    backpressure.check(hub, (target.partner for target in targets))  # 429 when a target's outbox is full
    digest = hashlib.sha256(data).hexdigest()
    received_at = utcnow()
    # Sign before opening the write transaction: the database lock is held for storage only.
    receipt = build_receipt(hub.signer, message_id=header.message_id, sender=header.sender, digest=digest,
                            received_at=received_at)
    lease = Lease.of(hub, lease_to, targets, received_at)
    accepted = AcceptedMessage(header, tuple(targets), tuple(steps), data=data, canonical=canonical, digest=digest,
                               receipt=receipt, received_at=received_at, lease=lease)
    # written and committed with the other intakes waiting now (hub/store/group_commit.py), before the receipt goes
    try:
        leased = hub.committer.store(store_accepted, accepted)
    except IntegrityError as exc:  # this sender's message id is already stored (a retry, or a concurrent intake)
        return run_blocking(_answer_duplicate, hub, header, digest, exc)  # off the event loop when inline
    unleased = {target.partner for target in targets} - (lease.partners if lease else set())
    if unleased:
        hub.wake_workers(unleased)
    return Receipt(header.message_id, header.sender, header.type, receipt, duplicate=False, leased=leased)


@dataclass(frozen=True)
class Lease:
    """Deliveries stored already leased to the delivery worker that took the message in, for it to deliver at
    once: a partner's synchronous answer, taken in by the worker that sent the message it answers, goes to
    the registry (a consumer in the same process) without a wake-up, a claim transaction, or a read of the
    rows just written (hub/delivery/workers.py `_deliver_leased`). The lease is the one a claim gives (the attempt
    counted, `lease_seconds`): if the worker does not deliver them (it stops, the process dies), the lease runs
    out and any worker claims them."""
    owner: str
    until: datetime.datetime
    partners: frozenset[str]   # the targets leased: those consumed in this process

    @classmethod
    def of(cls, hub, owner: str | None, targets, now: datetime.datetime) -> "Lease | None":
        partners = frozenset(target.partner for target in targets if owner and hub.consumes_here(target.partner))
        if not partners:
            return None
        return cls(owner, now + datetime.timedelta(seconds=hub.settings.lease_seconds), partners)


@dataclass(frozen=True)
class AcceptedMessage:
    """One message intake accepted, its receipt signed: what `store_accepted` writes for it."""
    header: Header
    targets: tuple       # the route's targets that apply to it: one delivery each
    steps: tuple         # (kind, detail) of the timeline events before ACCEPTED
    data: bytes
    canonical: bytes | None
    digest: str
    receipt: bytes
    received_at: datetime.datetime
    lease: Lease | None = None


class LeasedDelivery(NamedTuple):
    """A delivery stored leased to the worker that took its message in (`Lease`), with its row and its
    message's as stored (every column), so that the worker need not read them back."""
    id: int
    partner: str
    delivery: dict
    message: dict


# Every column of a stored row, NULL: the columns intake does not write
_BLANK_MESSAGE = dict.fromkeys(column.name for column in Message.__table__.c)
_BLANK_DELIVERY = dict.fromkeys(column.name for column in Delivery.__table__.c)


def _leased(message: AcceptedMessage, message_pk: int, delivery_ids: list[int]) -> tuple[LeasedDelivery, ...]:
    stored = _BLANK_MESSAGE | _message_row(message) | {"id": message_pk}
    return tuple(LeasedDelivery(delivery_id, target.partner,
                                _BLANK_DELIVERY
                                | _delivery_row(message_pk, target, message.received_at, message.lease)
                                | {"id": delivery_id}, stored)
                 for target, delivery_id in zip(message.targets, delivery_ids)
                 if target.partner in message.lease.partners)


_MESSAGE_COLUMNS = ("message_id", "sender", "recipient", "type", "correlation_id", "in_reply_to", "state", "digest",
                    "received_bytes", "canonical_bytes", "receipt", "received_at", "updated_at")
_DELIVERY_COLUMNS = ("message_pk", "partner", "mapping", "schema_name", "operation", "state", "attempts",
                     "next_attempt_at", "lease_owner", "lease_expires_at")
_INSERT_MESSAGES = RowInsert(Message.__table__, _MESSAGE_COLUMNS, returning=("id", "sender", "message_id"))
_INSERT_DELIVERIES = RowInsert(Delivery.__table__, _DELIVERY_COLUMNS,
                               returning=("id", "message_pk", "partner", "operation"))
_message_values = operator.itemgetter(*_MESSAGE_COLUMNS)
_delivery_values = operator.itemgetter(*_DELIVERY_COLUMNS)


def store_accepted(connection, messages: Sequence[AcceptedMessage]) -> list[tuple]:
    """The messages, their outbox rows and their timelines, however many, in three statements (handed to the
    driver as they are, hub/store/row_inserts.py: a multi-row INSERT ... RETURNING for the messages, one for the
    deliveries, one for the events); one outcome per message: its deliveries stored leased (`LeasedDelivery`).

    The unique (sender, message id) constraint refuses a second copy: the statement fails, group commit runs
    each message again alone and the caller answers the one refused as a duplicate. Each message's events
    are inserted together, in the order they happened (the evidence chain seals by id)."""
    # Multi-row inserts whose RETURNING rows are matched to the items by key, not by position: the
    # databases do not promise their order.
    returned = _INSERT_MESSAGES(connection, [_message_values(_message_row(message)) for message in messages])
    pk_of = {(sender, message_id): pk for pk, sender, message_id in returned}
    message_pks = [pk_of[message.header.sender, message.header.message_id] for message in messages]
    deliveries = [_delivery_values(_delivery_row(message_pk, target, message.received_at, message.lease))
                  for message, message_pk in zip(messages, message_pks) for target in message.targets]
    delivery_ids: dict[tuple, list[int]] = {}
    for delivery_id, message_pk, partner, operation in sorted(_INSERT_DELIVERIES(connection, deliveries)):
        # a (message, partner, operation) twice: their ids in order
        delivery_ids.setdefault((message_pk, partner, operation), []).append(delivery_id)
    rows = []
    outcomes: list[tuple[LeasedDelivery, ...]] = []  # each message's deliveries stored leased
    for message, message_pk in zip(messages, message_pks):
        ids = [delivery_ids[message_pk, target.partner, target.operation].pop(0) for target in message.targets]
        rows.extend(_timeline_rows(message, message_pk, ids))
        outcomes.append(_leased(message, message_pk, ids) if message.lease is not None else ())
    timeline.insert_rows(connection, rows)
    return outcomes


def _message_row(message: AcceptedMessage) -> dict:
    header = message.header
    return {"message_id": header.message_id, "sender": header.sender, "recipient": header.recipient,
            "type": header.type, "correlation_id": header.correlation_id, "in_reply_to": header.in_reply_to,
            "state": MessageState.ACCEPTED, "digest": message.digest, "received_bytes": message.data,
            "canonical_bytes": message.canonical, "receipt": message.receipt, "received_at": message.received_at,
            "updated_at": message.received_at}


def _delivery_row(message_pk: int, target, received_at, lease: Lease | None) -> dict:
    row = {"message_pk": message_pk, "partner": target.partner, "mapping": target.mapping,
           "schema_name": target.schema_, "operation": target.operation, "state": DeliveryState.PENDING,
           "attempts": 0, "next_attempt_at": received_at, "lease_owner": None, "lease_expires_at": None}
    if lease is not None and target.partner in lease.partners:  # as a claim leaves it (hub/delivery/outbox.py)
        row.update(attempts=1, lease_owner=lease.owner, lease_expires_at=lease.until)
    return row


def _timeline_rows(message: AcceptedMessage, message_pk: int, delivery_ids: list[int]) -> list[dict]:
    """The message's events: the steps, ACCEPTED, then QUEUED for each delivery (its id from `delivery_ids`)."""
    at, canonical = message.received_at, message.canonical
    vouched = {timeline.RECEIVED: message.digest, timeline.VERIFIED: timeline.sha256(canonical),
               timeline.MAPPED_IN: timeline.sha256(canonical)}
    rows = [timeline.row(message_pk, kind, detail, at, digest=vouched.get(kind)) for kind, detail in message.steps]
    rows.append(timeline.row(message_pk, timeline.ACCEPTED, f"sha256 {message.digest[:16]}…, receipt signed", at,
                             digest=timeline.sha256(message.receipt)))
    for target, delivery_id in zip(message.targets, delivery_ids):
        rows.append(timeline.row(message_pk, timeline.QUEUED, f"for {target.partner}"
                                 + (f" ({target.operation})" if target.operation else ""), at,
                                 delivery_id=delivery_id))
    return rows


def _answer_duplicate(hub, header: Header, digest: str, refusal: IntegrityError) -> Receipt:
    """The receipt of the message this one repeats; `refusal` again when the conflict was another."""
    with hub.sessions.begin() as session:
        existing = session.scalars(select(Message).where(
            Message.sender == header.sender, Message.message_id == header.message_id)).first()
        if existing is None:
            raise refusal
        return _duplicate(session, existing, digest)


def _duplicate(session, existing: Message, digest: str) -> Receipt:
    if existing.digest != digest:
        raise DuplicateConflict(
            f"message id {existing.message_id!r} from {existing.sender} was already accepted with other content",
            [Problem(f"first accepted with sha256 {existing.digest}, this one has sha256 {digest}",
                     path="/Message/Header/MessageId")])
    # sealed once per message; every later copy is only counted (hub_messages_duplicate_total): replays
    # cannot grow the evidence chain
    if session.scalar(select(Event.id).where(Event.message_pk == existing.id, Event.kind == timeline.DUPLICATE)
                      .limit(1)) is None:
        timeline.record(session, existing, timeline.DUPLICATE, "same id and bytes again; first receipt returned "
                                                               "(further copies are counted, not recorded)")
    return Receipt(existing.message_id, existing.sender, existing.type, existing.receipt, duplicate=True)


def check_against_route(route, header: Header) -> None:
    """The Recipient must be one of the route's recipients (the message is listed under it), and an answer
    (its route says `answer: true`) must say what it answers: InReplyTo is required."""
    recipients = sorted({target.partner for target in route.to})
    if header.recipient not in recipients:
        raise NotRoutable(f"{header.type} goes to {', '.join(recipients)}, not to the header's Recipient "
                          f"{header.recipient!r}", [Problem("Recipient is none of the route's recipients",
                                                            path="/Message/Header/Recipient")])
    if route.answer and not header.in_reply_to:
        raise UnknownCorrelation(f"{header.type} answers a message the hub sent to {header.sender}: "
                                 f"InReplyTo must name it",
                                 [Problem("InReplyTo missing from an answer", path="/Message/Header/InReplyTo")])


# The message an answer names (`in_reply_to`: its id and case), when the hub delivered it to `sender`; built once,
# as every answer runs it. Found by its id first, then its delivery to `sender` looked up: written as a join,
# SQLite's planner (no statistics) started from the deliveries to the partner instead, a scan that grew with
# every message the partner was ever sent.
CORRELATION_QUERY = (select(Message.message_id, Message.correlation_id)
                     .where(Message.message_id == bindparam("in_reply_to"),
                            exists().where(Delivery.message_pk == Message.id, Delivery.partner == bindparam("sender"))))


class SentMessage(NamedTuple):
    """The message a partner's synchronous answer answers, as the delivery worker that sent it to `partner` knows
    it (hub/delivery/workers.py `take_in_answer`): the answer's correlation is checked against it, without a
    read, when the answer names it."""
    partner: str
    message_id: str
    correlation_id: str | None


def _correlated(hub, header: Header, answering: SentMessage | None = None) -> tuple[str, str]:
    """`_correlate` in a read of its own, before the message's write transaction: what it checks (the message
    answered, its case, its delivery to the answer's sender) was committed before the answer could exist and
    never changes, and the write lock is then held for the writes alone. No read when the answer names
    `answering`, the message just sent to its sender."""
    if answering is not None and (answering.partner, answering.message_id) == (header.sender, header.in_reply_to):
        return _same_case(header, answering.correlation_id)
    with hub.read_engine.connect() as connection:
        return _correlate(connection, header)


def _correlate(connection, header: Header) -> tuple[str, str]:
    """An answer must name a message the hub delivered to its sender, in the same case."""
    original = connection.execute(CORRELATION_QUERY, {"in_reply_to": header.in_reply_to,
                                                      "sender": header.sender}).first()
    if original is None:
        raise UnknownCorrelation(f"{header.sender} answers message {header.in_reply_to!r}, "
                                 f"which the hub never sent to {header.sender}",
                                 [Problem("unknown InReplyTo", path="/Message/Header/InReplyTo")])
    return _same_case(header, original.correlation_id)


def _same_case(header: Header, answered_case: str | None) -> tuple[str, str]:
    if answered_case != header.correlation_id:
        raise UnknownCorrelation(f"answer to {header.in_reply_to!r} names case {header.correlation_id!r}, "
                                 f"but that message belongs to case {answered_case!r}",
                                 [Problem("CorrelationId mismatch", path="/Message/Header/CorrelationId")])
    return timeline.CORRELATED, f"answers {header.in_reply_to} in case {header.correlation_id}"

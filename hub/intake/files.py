"""Intake of documents too large to hold: streamed, checked like every message, kept as a file (a claim check).

A batch of 100,000 life certificates is about 35 MB, its acknowledgement 11 MB: over the message cap,
and as lxml trees several hundred megabytes. Such a document comes in as a file and is read once, as a
stream (hub.trust.streaming.verify_stream): hardened parse, XSD validation while parsing, the sender's
enveloped signature checked through the TrustStore (pinned certificates or the party's CA, as for every
message), the bytes copied into the engine's file store (hub/store/files.py) and hashed on the way. Then
as for every message: dedupe by (sender, message id), route, back-pressure, a receipt signed over the
file's sha256, the message and its outbox rows and timeline in one commit. The message keeps its bytes
in the file (`messages.payload_path`), never in a column; the timeline's RECEIVED entry seals the file's
sha256, so the evidence chain and an evidence export vouch for those bytes.

Two ways in:

  * a local client (the registry) submits a document already in its recipient's format, signed with
    its own key, and states the header (`FileHeader`: message id, type, case, recipient); the caller must
    be the sender, and the document must satisfy the partner schema of the route's targets;
  * a partner's file (a polling door) carries its header inside: the inbound route for its root element
    names the schema and the mapping; once verified, the mapping is applied to the document's skeleton
    (the root with its leaf children: the header fields, not the repeated items) to give the canonical
    header, as for a partner document read whole.

Routes with conditions (`when`) are XPath over a canonical envelope a file does not have: a file message
goes only through unconditional targets, and only to parties whose connector can send files (FileSender).
Delivery (hub/delivery/workers.py) sends the file through the connector's `send_file`; a target with a
partner schema receives the document signed by the hub (hub.trust.streaming.resign_stream).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lxml import etree
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from connectors.base import FileSender
from hub.access.rules import check_may_send
from hub.errors import (InputError, MalformedXml, NotAllowed, NotFound, NotRoutable,
                        PermanentDeliveryError, Problem, SchemaInvalid)
from hub.evidence import timeline
from hub.intake import backpressure
from hub.intake.accept import Receipt, _correlate, _duplicate, check_against_route
from hub.xml.envelope import Header, read_header
from hub.store import files as store
from hub.store.db import utcnow
from hub.store.models import Delivery, DeliveryState, Message, MessageState
from hub.trust.receipts import build_receipt
from hub.trust.streaming import item_depth, verify_stream

MAX_FILE_BYTES = 512 * 1024 * 1024   # one streamed document; memory does not grow with it, the disk does


@dataclass(frozen=True)
class FileHeader:
    """What a local client states about a document in its recipient's format (a canonical header's fields)."""

    message_id: str
    type: str
    correlation_id: str
    sender: str
    recipient: str
    in_reply_to: str | None = None


def accept_file(hub, path: Path, *, header: FileHeader | None = None, partner: str | None = None,
                caller: str | None = None) -> Receipt:
    """Intake of the document in the file at `path` (left in place: it is copied into the file store).

    From a local client: `header` (and `caller`, who must be its sender). From a partner's door: `partner`,
    the header then comes from the document. Raises InputError (refused: nothing stored) or TryLater."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"file of {size} bytes: the limit for a streamed document is {MAX_FILE_BYTES}")
    if partner is not None:
        return _from_partner(hub, path, partner)
    if header is None:
        raise InputError("a file from a local client needs its header (message id, type, case, recipient)")
    return _from_client(hub, path, header, caller)


def _from_client(hub, path: Path, header: FileHeader, caller: str | None) -> Receipt:
    if caller is not None and header.sender != caller:
        raise NotAllowed(f"submitting a file with sender {header.sender}: the caller speaks for {caller}")
    if not hub.trust.knows(header.sender):
        raise NotAllowed(f"sender {header.sender!r} is not a known party")
    targets = _route(hub, header)
    schemas = {target.schema_ for target in targets}
    if len(schemas) != 1 or None in schemas:
        raise NotRoutable(f"a {header.type} file needs one partner schema to be checked against (its route's "
                          f"targets name {sorted(map(str, schemas))})")
    schema_name = schemas.pop()
    what = f"{header.type} {header.message_id} from {header.sender}"
    kept, digest, result = _verified_copy(hub, path, schema_name, header.sender, what)
    try:
        steps = [(timeline.RECEIVED, f"{result.size} bytes from {header.sender}, read as a stream and kept as a file"),
                 (timeline.VALIDATED, f"against {schema_name}, while reading"),
                 (timeline.VERIFIED, f"signed by {header.sender} ({result.signed_by}), verified while reading")]
        return _store_and_route(hub, _as_header(header), targets, steps, kept, digest, result.size)
    finally:
        kept.unlink(missing_ok=True)


def _from_partner(hub, path: Path, partner: str) -> Receipt:
    party = hub.config.parties.get(partner)
    if party is None or party.transport == "local":
        raise NotAllowed(f"{partner!r} is not a partner that sends documents to the hub")
    root_tag = _root_tag(path, f"{partner} file")
    inbound = hub.config.inbound_for(partner, root_tag)
    if inbound is None:
        raise NotRoutable(f"{partner} may not send a {root_tag} document to the hub",
                          [Problem("no inbound route for this root element", path="/*")])
    skeleton = etree.Element(root_tag)

    def on_element(element: etree._Element) -> None:  # the root's leaf children: the document's header fields
        parent = element.getparent()
        if parent is not None and parent.getparent() is None and len(element) == 0:  # an item has children
            etree.SubElement(skeleton, element.tag).text = element.text

    kept, digest, result = _verified_copy(hub, path, inbound.schema_, partner, f"{partner} file {path.name}",
                                          on_element=on_element, roots={root_tag})
    try:
        try:  # mapped from the verified content only: the header fields of the signed document
            envelope = hub.mappings.apply(inbound.mapping, skeleton)
        except PermanentDeliveryError as exc:
            raise InputError(f"{partner} document's header could not be mapped to the canonical format: {exc}") \
                from None
        header = read_header(envelope)
        if not all((header.message_id, header.type, header.sender, header.recipient, header.correlation_id)):
            raise SchemaInvalid(f"the {partner} document's header maps to an incomplete canonical header: {header}")
        if header.sender != partner:
            raise NotAllowed(f"the {partner} document maps to sender {header.sender!r}")
        targets = _route(hub, header)
        steps = [(timeline.RECEIVED, f"{result.size} bytes from {partner}, read as a stream and kept as a file"),
                 (timeline.VALIDATED, f"against {inbound.schema_}, while reading"),
                 (timeline.VERIFIED, f"signed by {partner} ({result.signed_by}), verified while reading"),
                 (timeline.MAPPED_IN, f"header with {inbound.mapping} (the document stays in {partner}'s format)")]
        return _store_and_route(hub, header, targets, steps, kept, digest, result.size)
    finally:
        kept.unlink(missing_ok=True)


def _as_header(header: FileHeader) -> Header:
    return Header(header.message_id, header.correlation_id, header.in_reply_to, header.type, header.sender,
                  header.recipient, None)


def _root_tag(path: Path, what: str) -> str:
    """The root element's name, read from the first bytes (the same hardened parser options)."""
    try:
        with open(path, "rb") as source:
            for _event, element in etree.iterparse(source, events=("start",), resolve_entities=False, load_dtd=False,
                                                   no_network=True, huge_tree=False):
                return element.tag
    except etree.XMLSyntaxError as exc:
        raise MalformedXml(f"{what} is not well-formed XML: {exc}") from None
    raise MalformedXml(f"{what} holds no element")


def _route(hub, header) -> list:
    """The route's unconditional targets, the sender allowed to send this type; every target able to take a file."""
    route = hub.config.route_for(header.type)
    if route is None:
        raise NotRoutable(f"no route for message type {header.type!r}")
    check_may_send(hub.config, header.sender, header.type)
    if header.sender not in route.from_:
        raise NotAllowed(f"{header.sender} may not send {header.type}")
    check_against_route(route, header)
    targets = [target for target in route.to if target.when is None]
    if not targets:
        raise NotRoutable(f"{header.type} goes only through conditional targets, which a file message cannot take")
    unable = [t.partner for t in targets if not isinstance(hub.connectors.get(t.partner), FileSender)]
    if unable:
        raise NotRoutable(f"{', '.join(unable)}: its transport cannot send a file ({header.type} "
                          f"{header.message_id} is too large to go as a message)")
    return targets


def _verified_copy(hub, path: Path, schema_name: str, signer: str, what: str, *, on_element=None, roots=None):
    """Read the file once: verified (schema, signature via the TrustStore) while copied to a temporary of
    the file store and hashed. Returns (temporary, sha256, result with .size and .signed_by)."""
    schema = etree.XMLSchema(etree.parse(str(hub.settings.schemas_dir / schema_name)))
    temporary = store.incoming(hub)
    try:
        with open(path, "rb") as source, open(temporary, "wb") as out:
            tee = store.Tee(source, out)
            result = verify_stream(tee, trust=hub.trust, signer_name=signer, what=what, roots=roots, schema=schema,
                                   apex_depth=item_depth(path), on_element=on_element)
            tee.drain()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, tee.sha256, _Verified(tee.size, result.signed_by)


@dataclass(frozen=True)
class _Verified:
    size: int
    signed_by: str


def _store_and_route(hub, header: Header, targets, steps, temporary: Path, digest: str, size: int) -> Receipt:
    """The file settled in the store, then the message, outbox rows and timeline in one commit (as for every
    message); the same id and file again gets the first receipt, the same id with another file a 409."""
    with hub.reads() as session:
        known = session.scalar(select(Message.id).where(Message.sender == header.sender,
                                                        Message.message_id == header.message_id))
    if known is not None:  # a batch submitted again (a crash before its sender recorded the receipt)
        return _again(hub, header, digest)
    backpressure.check(hub, (target.partner for target in targets))
    relative = store.message_name(header.sender, header.message_id, digest)
    store.settle(hub, temporary, relative)
    received_at = utcnow()
    receipt = build_receipt(hub.signer, message_id=header.message_id, sender=header.sender, digest=digest,
                            received_at=received_at)
    try:
        with hub.sessions.begin() as session:
            events = list(steps)
            if header.in_reply_to:
                events.append(_correlate(session.connection(), header))
            connection = session.connection()
            message_pk = connection.execute(insert(Message.__table__).returning(Message.id), {
                "message_id": header.message_id, "sender": header.sender, "recipient": header.recipient,
                "type": header.type, "correlation_id": header.correlation_id, "in_reply_to": header.in_reply_to,
                "state": MessageState.ACCEPTED, "digest": digest, "received_bytes": None, "canonical_bytes": None,
                "payload_path": relative, "payload_size": size, "receipt": receipt, "received_at": received_at,
                "updated_at": received_at}).scalar_one()
            rows = [timeline.row(message_pk, kind, detail, received_at,
                                 digest=digest if kind == timeline.RECEIVED else None) for kind, detail in events]
            rows.append(timeline.row(message_pk, timeline.ACCEPTED, f"sha256 {digest[:16]}…, receipt signed",
                                     received_at, digest=timeline.sha256(receipt)))
            for target in targets:
                delivery_id = connection.execute(insert(Delivery.__table__).returning(Delivery.id), {
                    "message_pk": message_pk, "partner": target.partner, "mapping": None,
                    "schema_name": target.schema_, "operation": target.operation, "state": DeliveryState.PENDING,
                    "attempts": 0, "next_attempt_at": received_at}).scalar_one()
                rows.append(timeline.row(message_pk, timeline.QUEUED, f"for {target.partner} (the file, "
                                         + ("signed by the hub" if target.schema_ else "as received") + ")",
                                         received_at, delivery_id=delivery_id))
            timeline.insert_rows(connection, rows)
    except IntegrityError:  # the same id stored meanwhile (a concurrent intake)
        return _again(hub, header, digest)
    hub.wake_workers()
    return Receipt(header.message_id, header.sender, header.type, receipt, duplicate=False)


def _again(hub, header: Header, digest: str) -> Receipt:
    with hub.sessions.begin() as session:
        existing = session.scalars(select(Message).where(Message.sender == header.sender,
                                                         Message.message_id == header.message_id)).one()
        return _duplicate(session, existing, digest)  # other bytes under the same id: DuplicateConflict (409)


def message_files(hub, message_id: str, *, sender: str) -> dict:
    """Where a message kept in a file has its bytes (see `Hub.message_files`)."""
    with hub.reads() as session:
        message = session.scalars(select(Message).where(Message.sender == sender,
                                                        Message.message_id == message_id)).first()
        if message is None:
            raise NotFound(f"no message {message_id!r} from {sender}")
        sent = {delivery.partner: store.resolve(hub, delivery.sent_path) for delivery in message.deliveries
                if delivery.sent_path is not None}
        received = store.resolve(hub, message.payload_path) if message.payload_path else None
        return {"received": received, "size": message.payload_size, "sha256": message.digest, "sent": sent}

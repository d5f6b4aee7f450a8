"""The one way in: every door hands what arrived to `take_in`, through `Hub.receive`.

    door            who calls                                               what arrives
    rest            POST /api/v1/messages (hub/api/messages.py)             a canonical envelope
    rest-partner    POST /api/v1/partners/{CODE}/messages                   a partner's own-format document
    soap            POST /soap/{CODE} (connectors/soap/inbound.py)          the document out of the envelope
    sftp            polling (hub/intake/polling.py)                         a file a partner left
    registry        the registry, in process (registry/runtime.py)          a canonical envelope
    answer          delivery (hub/delivery/workers.py)                      a partner's synchronous answer
    file            a large document kept in a file (claim check)           a document, by path (any door
                                                                            may pass a `path` instead of bytes)

`take_in` runs intake (hub/intake/accept.py) and, whatever comes of it, does the bookkeeping once:
accepted -> hub_messages_accepted_total{type, sender, door}; the same message again ->
hub_messages_duplicate_total{type, sender, door}; refused (InputError) -> one row in `refusals`
and hub_messages_refused_total{reason, door}, then the error is raised for the door to answer in
its protocol. TryLater (back-pressure) is not a refusal: nothing is recorded, the door answers it.

The HTTP doors (REST, SOAP) call `receive_on_loop` from their event loop: intake runs inline there, its
commit awaited (hub/concurrency.py). Intake's steps (parse, validate, verify, sign the receipt) are
CPU-bound: in threads they contend for one interpreter lock, and measured under the benchmark, a process
with 16 intake threads spent as much CPU switching between them as working. On the loop they run one after
the other with no switch at all, and the wait for the commit lets the loop take the next requests in, whose
writes join the same group commit. A document over INLINE_MAX_BYTES (rare: messages are a few KB) is taken
in on a thread instead, so that its longer parse and validation do not hold the other requests.

A door that refuses something itself, before intake (the body's announced size or media type, a
SOAP envelope that holds no document), calls `refused` with what it knows: that is recorded and
counted the same way. Nothing else records refusals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from lxml import etree

from hub import metrics
from hub.concurrency import run_blocking, run_inline
from hub.errors import InputError, NotAllowed
from hub.intake.accept import Receipt, SentMessage, accept_canonical, accept_partner_document
from hub.intake.files import FileHeader, accept_file
from hub.intake.refusals import record_refusal

__all__ = ["DOORS", "Arrival", "FileHeader", "Receipt", "receive_on_loop", "refused", "take_in"]

INLINE_MAX_BYTES = 256 * 1024
DOORS = ("rest", "rest-partner", "soap", "sftp", "registry", "answer", "file")


@dataclass(frozen=True)
class Arrival:
    """What came in, and through which door.

    `partner` set: a partner's own-format document, from that partner (verified as its, mapped to
    canonical); None: a signed canonical envelope. `caller`: the party the caller speaks for (an API
    token's partner, the in-process registry), who must be the canonical Sender, or the partner.
    `submitted_by`: the API token that submitted it ("token <id> (<role>)"), named by the RECEIVED event.
    `lease_to`: the delivery worker taking in a partner's synchronous answer (the answer door): the answer's
    deliveries to consumers in this process are stored leased to it, for it to deliver right away
    (hub/intake/accept.py `Lease`). `parsed`: a partner's `data` as the door already parsed it, with intake's
    limits (the answer door, whose worker looks at the root first), so that intake does not parse it again.
    `answering`: the message a synchronous answer answers, as its worker sent it (hub/intake/accept.py
    `SentMessage`)."""

    door: str
    data: bytes | None = None
    path: Path | None = None     # a large document kept in a file (claim check) instead of `data`
    partner: str | None = None
    caller: str | None = None
    header: FileHeader | None = None  # a file from a local client: what it states (hub/intake/files.py)
    submitted_by: str | None = None
    lease_to: str | None = None
    parsed: etree._Element | None = None
    answering: SentMessage | None = None

    def __post_init__(self):
        if self.door not in DOORS:
            raise ValueError(f"unknown door {self.door!r} (the doors: {', '.join(DOORS)})")
        if (self.data is None) == (self.path is None):
            raise ValueError(f"an arrival through the {self.door} door has either bytes or a path, not "
                             f"{'both' if self.data is not None else 'neither'}")
        if self.parsed is not None and (self.data is None or self.partner is None):
            raise ValueError("only a partner's document given as bytes can come parsed")
        if self.answering is not None and self.partner != self.answering.partner:
            raise ValueError("an answer comes from the partner its message was sent to")


def take_in(hub, arrival: Arrival) -> Receipt:
    """Intake of one arrival; returns the hub's receipt (the first one again for a duplicate).

    Raises InputError (recorded and counted here, once) or TryLater (nothing recorded)."""
    try:
        receipt = _accept(hub, arrival)
    except InputError as exc:
        size = Path(arrival.path).stat().st_size if arrival.path is not None and Path(arrival.path).exists() else None
        run_blocking(refused, hub, arrival.door, exc, party=arrival.partner or arrival.caller, data=arrival.data,
                     size=size)  # a write: off the event loop when intake runs on it
        raise
    counter = metrics.DUPLICATES if receipt.duplicate else metrics.ACCEPTED
    counter.labels(receipt.type, receipt.sender, arrival.door).inc()
    return receipt


async def receive_on_loop(hub, arrival: Arrival) -> Receipt:
    """`hub.receive(arrival)` for a door on the event loop: inline, or on a thread for a large document."""
    if arrival.data is not None and len(arrival.data) <= INLINE_MAX_BYTES:
        return await run_inline(hub.receive, arrival)
    return await anyio.to_thread.run_sync(hub.receive, arrival)


def _accept(hub, arrival: Arrival) -> Receipt:
    if arrival.path is not None:  # claim check: a document kept in a file, read as a stream
        return accept_file(hub, arrival.path, header=arrival.header, partner=arrival.partner, caller=arrival.caller)
    if arrival.partner is None:
        return accept_canonical(hub, arrival.data, caller=arrival.caller, submitted_by=arrival.submitted_by,
                                lease_to=arrival.lease_to)
    if arrival.caller is not None and arrival.caller != arrival.partner:
        raise NotAllowed(f"submitting a document as {arrival.partner}: the caller speaks for {arrival.caller}")
    return accept_partner_document(hub, arrival.partner, arrival.data, submitted_by=arrival.submitted_by,
                                   lease_to=arrival.lease_to, root=arrival.parsed, answering=arrival.answering)


def refused(hub, door: str, error: InputError, *, party: str | None = None, data: bytes | None = None,
            size: int | None = None, record: bool = True) -> None:
    """Record and count one refusal at `door`: intake's (from `take_in`), or the door's own before intake.

    `party`: the door's party (the partner of the URL or endpoint, the polled partner) or the caller's;
    when None, the canonical Sender as the bytes claim it. `data` None: the bytes were not read (refused
    on their announced size or media type); `size` is then what was announced, if anything. Best effort:
    a refusal that cannot be recorded (the database away) is logged, never raised. `record` False: counted
    only (a door throttling junk: the SOAP door's unknown endpoints)."""
    metrics.REFUSED.labels(type(error).__name__, door).inc()
    if record:
        record_refusal(hub, channel=door, partner=party, error=error, data=data, size=size)

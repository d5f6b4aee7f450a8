"""The evidence archive: two hash chains (the message timeline and the audit log), sealed and verified.

Rows of `events` and `audit_log` are written unsealed, in the same transaction as the change they
record ("accepted means durable" covers the evidence too). `seal_pending` then gives them, in id
order, under one lock per chain (PostgreSQL: `pg_advisory_xact_lock`; SQLite: its write lock), their
place and hashes -- in one background job (HubService, every second), so intake never waits for it:

    chain_seq     1, 2, 3, ... without gaps
    content_hash  sha256 of the entry's canonical line (below), hex
    chain_hash    sha256(previous chain_hash + content_hash), both as 64 hex characters;
                  the previous chain_hash of entry 1 is 64 zeros

The canonical line is JSON (an array, ASCII only, no spaces: `json.dumps(..., ensure_ascii=True,
separators=(",", ":"))`), its bytes hashed as they are:

    timeline  ["event", seq, at, message_id, sender, correlation_id, delivery_id, partner, kind, detail, digest]
    audit     ["audit", seq, at, actor, action, subject, detail, digest]

`at` is ISO 8601 in UTC with microseconds (`2026-11-23T10:00:00.123456+00:00`); `digest` (last, so
a shell can check it with a suffix match) is the sha256 of the bytes the entry vouches for, or null
(hub/evidence/timeline.py lists which; a null digest of a kind that vouches for bytes says there were none, so
the column must still be empty). `verify_chains` recomputes every line, link and digest from what is
stored, the files of messages kept in a file (hub/store/files.py) included; `hub evidence export`
(hub/evidence/export.py) writes a case's span for offline checking.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Iterator

from sqlalchemy import bindparam, func, select, text, update

from hub.evidence import timeline
from hub.store import files
from hub.store.models import AuditEntry, Delivery, Event, Message

ZERO_HASH = "0" * 64
CHAINS = ("timeline", "audit")
_LOCK_KEYS = {"timeline": 0x45564944_0001, "audit": 0x45564944_0002}  # "EVID" + chain
_BATCH = 1000


# -- canonical lines --------------------------------------------------------------------------------

def canonical_json(values: list) -> str:
    return json.dumps(values, ensure_ascii=True, separators=(",", ":"))


def iso(at) -> str:
    return at.isoformat(timespec="microseconds")


def event_line(seq: int, event: Event, message_id: str, sender: str, correlation_id: str,
               partner: str | None) -> str:
    return canonical_json(["event", seq, iso(event.at), message_id, sender, correlation_id, event.delivery_id,
                           partner, event.kind, event.detail or "", event.digest])


def audit_line(seq: int, entry: AuditEntry) -> str:
    return canonical_json(["audit", seq, iso(entry.at), entry.actor, entry.action, entry.subject or "",
                           entry.detail or "", entry.digest])


def sha256_text(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def link(previous_chain_hash: str, content_hash: str) -> str:
    return sha256_text(previous_chain_hash + content_hash)


# -- sealing ----------------------------------------------------------------------------------------

def _lock(session, chain: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEYS[chain]})
    # SQLite: every transaction starts with BEGIN IMMEDIATE (hub/store/db.py), so one sealer writes at a time.


def _head(session, model) -> tuple[int, str]:
    row = session.execute(select(model.chain_seq, model.chain_hash).where(model.chain_seq.is_not(None))
                          .order_by(model.chain_seq.desc()).limit(1)).first()
    return (row.chain_seq, row.chain_hash) if row else (0, ZERO_HASH)


_EVENT_COLUMNS = (Event.id, Event.at, Event.delivery_id, Event.kind, Event.detail, Event.digest)
_AUDIT_COLUMNS = (AuditEntry.id, AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.subject,
                  AuditEntry.detail, AuditEntry.digest)


def seal_pending(hub, *, batch: int = 500) -> dict[str, int]:
    """Seal every committed, unsealed row of both chains; returns how many of each were sealed.

    Rows are read and updated as plain rows (one executemany per batch): sealing keeps pace with intake."""
    sealed = {"timeline": 0, "audit": 0}
    for chain, model in (("timeline", Event), ("audit", AuditEntry)):
        while True:
            with hub.sessions.begin() as session:
                _lock(session, chain)
                seq, previous = _head(session, model)
                if model is Event:
                    rows = session.execute(
                        select(*_EVENT_COLUMNS, Message.message_id, Message.sender, Message.correlation_id,
                               Delivery.partner)
                        .join(Message, Event.message_pk == Message.id)
                        .outerjoin(Delivery, Event.delivery_id == Delivery.id)
                        .where(Event.chain_seq.is_(None)).order_by(Event.id).limit(batch)).all()
                else:
                    rows = session.execute(select(*_AUDIT_COLUMNS).where(AuditEntry.chain_seq.is_(None))
                                           .order_by(AuditEntry.id).limit(batch)).all()
                seals = []
                for row in rows:
                    seq += 1
                    line = (event_line(seq, row, row.message_id, row.sender, row.correlation_id, row.partner)
                            if model is Event else audit_line(seq, row))
                    content_hash = sha256_text(line)
                    previous = link(previous, content_hash)
                    seals.append({"row_id": row.id, "seq": seq, "content": content_hash, "chain": previous})
                if seals:
                    table = model.__table__
                    session.connection().execute(
                        update(table).where(table.c.id == bindparam("row_id"))
                        .values(chain_seq=bindparam("seq"), content_hash=bindparam("content"),
                                chain_hash=bindparam("chain")), seals)
            sealed[chain] += len(rows)
            if len(rows) < batch:
                break
    return sealed


# -- verification -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    chain: str        # timeline | audit
    seq: int          # the chain position that does not verify
    entry: str        # which row: "event 812 (RECEIVED) of message REGISTRY-LIC-... from REGISTRY"
    problem: str      # what differs

    def __str__(self) -> str:
        return f"{self.chain} chain, entry {self.seq}: {self.entry}: {self.problem}"


@dataclass
class ChainReport:
    chain: str
    entries: int = 0              # sealed entries walked
    unsealed: int = 0             # rows still waiting for the sealer (written after it ran)
    digests_checked: int = 0      # digests recomputed from stored bytes
    purged: int = 0               # digests whose bytes were purged by a recorded retention purge
    head_seq: int = 0
    head_hash: str = ZERO_HASH
    failure: Failure | None = None


@dataclass
class VerificationReport:
    chains: dict[str, ChainReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(report.failure is None for report in self.chains.values())

    @property
    def first_failure(self) -> Failure | None:
        return next((r.failure for r in self.chains.values() if r.failure), None)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per chain (what `hub evidence verify` and the demo print)."""
        out = []
        for report in self.chains.values():
            state = "OK" if report.failure is None else "FAILED"
            extra = f", {report.digests_checked} digests checked against stored bytes" if report.chain == "timeline" else ""
            extra += f", {report.purged} purged by retention" if report.purged else ""
            extra += f", {report.unsealed} not yet sealed" if report.unsealed else ""
            out.append(f"{report.chain} chain: {state}: {report.entries} entries{extra}; "
                       f"head {report.head_seq} {report.head_hash[:16]}…")
            if report.failure:
                out.append(f"  first entry that does not verify: {report.failure}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


Progress = Callable[[str, int, int], None]  # (chain, done, total)


def verify_chains(hub, *, seal: bool = True, progress: Progress | None = None) -> VerificationReport:
    """Seal what is pending (unless `seal` is False), then walk both chains from entry 1.

    Each entry's canonical line is rebuilt from the rows as stored and hashed, each link recomputed,
    and each digest of the timeline recomputed from the stored bytes (received, canonical, receipt,
    sent, partner's receipt); an entry that sealed a null digest for bytes of its kind requires the column
    to be still empty. A missing payload is accepted only for a message whose retention purge is itself a
    sealed entry of the chain (looked up when the missing bytes are met, so a purge committed during the
    walk counts). Each chain stops at its first failure, which it names."""
    if seal:
        seal_pending(hub)
    report = VerificationReport()
    report.chains["timeline"] = _verify_timeline(hub, progress, seal)
    report.chains["audit"] = _verify_audit(hub, progress)
    return report


def _counts(session, model) -> tuple[int, int]:
    total = session.scalar(select(func.count()).select_from(model).where(model.chain_seq.is_not(None)))
    unsealed = session.scalar(select(func.count()).select_from(model).where(model.chain_seq.is_(None)))
    return total, unsealed


def _gap(report: ChainReport, seq: int, what: str) -> Failure | None:
    """A row deleted from the chain shows as a gap in chain_seq: named by the position that is missing."""
    if seq == report.head_seq + 1:
        return None
    missing = report.head_seq + 1
    return Failure(report.chain, missing, "entry missing (deleted?)",
                   f"the chain jumps from entry {report.head_seq} to entry {seq} ({what})")


def _check_link(report: ChainReport, seq: int, row, line: str, previous: str, what: str) -> str | None:
    content = sha256_text(line)
    if content != row.content_hash:
        return (f"its fields no longer match what was sealed ({what} changed since): content hash "
                f"{content[:16]}… recomputed, {(row.content_hash or '')[:16]}… sealed")
    if link(previous, content) != row.chain_hash:
        return (f"chain hash does not link to entry {seq - 1}: sha256(previous + content) = "
                f"{link(previous, content)[:16]}…, sealed {(row.chain_hash or '')[:16]}…")
    return None


def _verify_timeline(hub, progress: Progress | None, seal: bool) -> ChainReport:
    report = ChainReport("timeline")
    with hub.sessions() as session:
        total, report.unsealed = _counts(session, Event)
    purge_recorded = _PurgeLookup(hub, seal)
    file_digest = _FileDigests(hub)
    previous, last = ZERO_HASH, 0
    while True:
        with hub.sessions() as session:
            rows = session.execute(
                select(Event, Message.message_id, Message.sender, Message.correlation_id, Delivery.partner)
                .join(Message, Event.message_pk == Message.id)
                .outerjoin(Delivery, Event.delivery_id == Delivery.id)
                .where(Event.chain_seq > last).order_by(Event.chain_seq).limit(_BATCH)).all()
            if not rows:
                break
            # every row's message and delivery: an entry with a null digest is checked too (its column must
            # still be empty), so not only the rows that carry a digest
            messages = _load(session, Message, {r[0].message_pk for r in rows})
            deliveries = _load(session, Delivery, {r[0].delivery_id for r in rows if r[0].delivery_id})
        for event, message_id, sender, correlation_id, partner in rows:
            seq = event.chain_seq
            what = f"event {event.id} ({event.kind}) of message {message_id} from {sender}"
            line = event_line(seq, event, message_id, sender, correlation_id, partner)
            report.failure = _gap(report, seq, what)
            if report.failure:
                return report
            problem = _check_link(report, seq, event, line, previous, "its kind, detail, time, digest or message")
            if problem is None:
                problem = _check_digest(report, event, messages.get(event.message_pk),
                                        deliveries.get(event.delivery_id), purge_recorded, file_digest)
            if problem:
                report.failure = Failure("timeline", seq, what, problem)
                return report
            previous, report.head_seq, report.head_hash = event.chain_hash, seq, event.chain_hash
            report.entries += 1
        last = rows[-1][0].chain_seq
        if progress:
            progress("timeline", report.entries, total)
    return report


def _load(session, model, ids: set) -> dict:
    ids = {i for i in ids if i is not None}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))} if ids else {}


class _PurgeLookup:
    """Is a message's retention purge a sealed entry of the chain? Asked when its bytes are found missing,
    not read once before the walk: a purge that commits while the walk runs is then found too (its PURGED
    event is written in the purge's own transaction). A PURGED event not yet sealed is sealed first, when
    the verification may seal (`verify_chains(seal=True)`), since sealing only appends after the head."""

    def __init__(self, hub, seal: bool):
        self.hub, self.seal, self.known = hub, seal, set()

    def _sealed(self, message_pk: int) -> bool | None:
        """True: sealed; False: recorded, not sealed yet; None: no PURGED event for the message."""
        with self.hub.sessions() as session:
            seqs = list(session.scalars(select(Event.chain_seq).where(Event.message_pk == message_pk,
                                                                      Event.kind == timeline.PURGED)))
        if not seqs:
            return None
        return any(s is not None for s in seqs)

    def __call__(self, message_pk: int) -> bool:
        if message_pk in self.known:
            return True
        sealed = self._sealed(message_pk)
        if sealed is False and self.seal:
            seal_pending(self.hub)
            sealed = self._sealed(message_pk)
        if sealed:
            self.known.add(message_pk)
        return bool(sealed)


class _FileDigests:
    """The sha256 of a file of the engine's file store (a message kept in a file), read in chunks once per
    verification (the received file is also what a consumer in the hub's process was sent)."""

    def __init__(self, hub):
        self.hub, self.known = hub, {}

    def __call__(self, relative: str) -> str | None:
        if relative not in self.known:
            try:
                self.known[relative] = files.sha256_of(files.resolve(self.hub, relative))[0]
            except (OSError, ValueError):
                self.known[relative] = None
        return self.known[relative]


def _kept_file(kind: str, message: Message, delivery: Delivery | None) -> tuple[str, str] | None:
    """(what, name in the file store) an entry of `kind` vouches for, when those bytes are kept in a file."""
    if kind == timeline.RECEIVED and message.payload_path is not None:
        return "file of the received document", message.payload_path
    if kind == timeline.SENT and delivery is not None and delivery.sent_path is not None:
        return f"file sent to {delivery.partner}", delivery.sent_path
    return None


def _check_digest(report: ChainReport, event: Event, message: Message | None, delivery: Delivery | None,
                  purge_recorded: Callable[[int], bool], file_digest: Callable[[str], str | None] | None = None
                  ) -> str | None:
    kept = _kept_file(event.kind, message, delivery) if file_digest is not None else None
    if kept is not None:
        what, relative = kept
        actual = file_digest(relative)
        if actual is None:
            return f"the {what} ({relative}) is missing from the engine's file store"
        if actual != event.digest:
            return (f"the {what} ({relative}) has sha256 {actual[:16]}…, the chain sealed "
                    f"{(event.digest or 'null')[:16]}… (changed since)")
        report.digests_checked += 1
        return None
    if event.kind == timeline.DUPLICATE:
        if message.digest != event.digest:
            return (f"the message's digest {(message.digest or '')[:16]}… differs from the one sealed "
                    f"{(event.digest or 'null')[:16]}…")
        report.digests_checked += 1
        return None
    vouched = timeline.vouched_bytes(event.kind, message, delivery)
    if vouched is None:
        return None  # an entry kind that vouches for no stored bytes: its digest is checked by the content hash
    what, stored = vouched
    if event.digest is None:
        # the entry vouched that there were no such bytes (e.g. VERIFIED without a separate canonical form):
        # the column must still be empty, or bytes were put there since
        if stored is not None:
            return (f"the {what} are stored (sha256 {hashlib.sha256(stored).hexdigest()[:16]}…), but the chain "
                    f"sealed that there were none (null digest): added since")
        return None
    if stored is None:
        if message.purged_at is not None and purge_recorded(message.id):
            report.purged += 1
            return None
        return f"the {what} are missing from the store, and no retention purge of this message is recorded"
    actual = hashlib.sha256(stored).hexdigest()
    if actual != event.digest:
        return f"the stored {what} have sha256 {actual[:16]}…, the chain sealed {event.digest[:16]}… (changed since)"
    report.digests_checked += 1
    return None


def _verify_audit(hub, progress: Progress | None) -> ChainReport:
    report = ChainReport("audit")
    with hub.sessions() as session:
        total, report.unsealed = _counts(session, AuditEntry)
    previous, last = ZERO_HASH, 0
    while True:
        with hub.sessions() as session:
            rows = session.scalars(select(AuditEntry).where(AuditEntry.chain_seq > last)
                                   .order_by(AuditEntry.chain_seq).limit(_BATCH)).all()
        if not rows:
            break
        for entry in rows:
            seq = entry.chain_seq
            what = f"audit entry {entry.id} ({entry.action} by {entry.actor}, {entry.subject or '-'})"
            report.failure = _gap(report, seq, what)
            if report.failure:
                return report
            problem = _check_link(report, seq, entry, audit_line(seq, entry), previous,
                                  "its actor, action, subject, detail or time")
            if problem:
                report.failure = Failure("audit", seq, what, problem)
                return report
            previous, report.head_seq, report.head_hash = entry.chain_hash, seq, entry.chain_hash
            report.entries += 1
        last = rows[-1].chain_seq
        if progress:
            progress("audit", report.entries, total)
    return report


def chain_entries(session, model, first: int, last: int) -> Iterator:
    """Sealed rows of one chain with first <= seq <= last, in order (used by the export)."""
    if model is Event:
        yield from session.execute(
            select(Event, Message.message_id, Message.sender, Message.correlation_id, Delivery.partner)
            .join(Message, Event.message_pk == Message.id)
            .outerjoin(Delivery, Event.delivery_id == Delivery.id)
            .where(Event.chain_seq >= first, Event.chain_seq <= last).order_by(Event.chain_seq))
    else:
        yield from session.execute(select(AuditEntry).where(AuditEntry.chain_seq >= first,
                                                            AuditEntry.chain_seq <= last)
                                   .order_by(AuditEntry.chain_seq))


def chain_hash_at(session, model, seq: int) -> str:
    if seq <= 0:
        return ZERO_HASH
    return session.scalar(select(model.chain_hash).where(model.chain_seq == seq))

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
the column must still be empty).

An app may declare tables of its own as chains (hub/apps.py, ChainedHistory: the registry's case status
history is the chain "cases"); their rows are sealed the same way, with the line
[name, seq, *fields] (datetimes as `at` above).

`verify_chains` never seals. It recomputes every line, link and digest from what is stored, the files of
messages kept in a file (hub/store/files.py) included; reports rows left unsealed longer than
HUB_EVIDENCE_UNSEALED_SECONDS; asks each app chain's `check` (the app's state against its history); and
compares every chain with the last hub-signed checkpoint of each checkpoint file (hub/evidence/checkpoints.py),
which `write_checkpoint` appends. `hub evidence export` (hub/evidence/export.py) writes a case's span for
offline checking.
"""
from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator

from sqlalchemy import func, select, text

from hub.errors import HubError
from hub.evidence import checkpoints, timeline
from hub.evidence.retention import retention_days
from hub.store import files
from hub.store.db import utcnow
from hub.store.models import AuditEntry, Delivery, Event, Message

log = logging.getLogger("hub.evidence.chains")

ZERO_HASH = "0" * 64
CHAINS = ("timeline", "audit")
_LOCK_KEYS = {"timeline": 0x45564944_0001, "audit": 0x45564944_0002}  # "EVID" + chain
_BATCH = 1000


# -- canonical lines --------------------------------------------------------------------------------

_CANONICAL = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))  # built once: json.dumps makes one per call


def canonical_json(values: list) -> str:
    return _CANONICAL.encode(values)


def iso(at) -> str:
    return at.isoformat(timespec="microseconds")


def event_line(seq: int, event: Event, message_id: str, sender: str, correlation_id: str,
               partner: str | None) -> str:
    return canonical_json(["event", seq, iso(event.at), message_id, sender, correlation_id, event.delivery_id,
                           partner, event.kind, event.detail or "", event.digest])


def audit_line(seq: int, entry: AuditEntry) -> str:
    return canonical_json(["audit", seq, iso(entry.at), entry.actor, entry.action, entry.subject or "",
                           entry.detail or "", entry.digest])


def history_line(chain, seq: int, row) -> str:
    """The line of a row of an app's chained history (hub/apps.py ChainedHistory)."""
    return canonical_json([chain.name, seq, *(iso(v) if isinstance(v, dt.datetime) else v for v in chain.fields(row))])


def sha256_text(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def link(previous_chain_hash: str, content_hash: str) -> str:
    return sha256_text(previous_chain_hash + content_hash)


# -- sealing ----------------------------------------------------------------------------------------

def _lock(session, chain: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        key = _LOCK_KEYS.get(chain) or 0x45564944_0000 + int(hashlib.sha256(chain.encode()).hexdigest()[:4], 16)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    # SQLite: every transaction starts with BEGIN IMMEDIATE (hub/store/db.py), so one sealer writes at a time.


def _head(session, table) -> tuple[int, str]:
    """(seq, chain hash) of the last sealed row of a chain's table (a model or a Table)."""
    table = getattr(table, "__table__", table)
    row = session.execute(select(table.c.chain_seq, table.c.chain_hash).where(table.c.chain_seq.is_not(None))
                          .order_by(table.c.chain_seq.desc()).limit(1)).first()
    return (row.chain_seq, row.chain_hash) if row else (0, ZERO_HASH)


def chain_tables(hub) -> dict[str, object]:
    """Every chain's table, by chain name: the timeline, the audit log, then the apps' chained histories."""
    return {"timeline": Event.__table__, "audit": AuditEntry.__table__,
            **{chain.name: chain.table for chain in hub.chained_histories}}


def heads(hub) -> checkpoints.Heads:
    """The sealed head of every chain: name -> (seq, chain hash)."""
    with hub.sessions() as session:
        return {name: _head(session, table) for name, table in chain_tables(hub).items()}


def hash_at(hub, chain: str, seq: int) -> str | None:
    table = chain_tables(hub)[chain]
    with hub.sessions() as session:
        return session.scalar(select(table.c.chain_hash).where(table.c.chain_seq == seq))


_EVENT_COLUMNS = (Event.id, Event.at, Event.delivery_id, Event.kind, Event.detail, Event.digest)
_AUDIT_COLUMNS = (AuditEntry.id, AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.subject,
                  AuditEntry.detail, AuditEntry.digest)


def seal_pending(hub, *, batch: int = 500) -> dict[str, int]:
    """Seal every committed, unsealed row of every chain; returns how many of each were sealed."""
    sealed = {"timeline": _seal_chain(hub, "timeline", Event.__table__, _unsealed_events, _event_line, batch),
              "audit": _seal_chain(hub, "audit", AuditEntry.__table__, _unsealed_audit, audit_line, batch)}
    for chain in hub.chained_histories:
        sealed[chain.name] = _seal_chain(hub, chain.name, chain.table,
                                         lambda session, limit, chain=chain: _unsealed_history(session, chain, limit),
                                         lambda seq, row, chain=chain: history_line(chain, seq, row), batch)
    return sealed


def _unsealed_events(session, limit: int) -> list:
    return _records(session.connection().execute(
        select(*_EVENT_COLUMNS, Message.message_id, Message.sender, Message.correlation_id, Delivery.partner)
        .join(Message, Event.message_pk == Message.id)
        .outerjoin(Delivery, Event.delivery_id == Delivery.id)
        .where(Event.chain_seq.is_(None)).order_by(Event.id).limit(limit)))


def _event_line(seq: int, row) -> str:
    return event_line(seq, row, row.message_id, row.sender, row.correlation_id, row.partner)


def _unsealed_audit(session, limit: int) -> list:
    return _records(session.connection().execute(
        select(*_AUDIT_COLUMNS).where(AuditEntry.chain_seq.is_(None)).order_by(AuditEntry.id).limit(limit)))


def _unsealed_history(session, chain, limit: int) -> list:
    table = chain.table
    return _records(session.connection().execute(
        chain.rows().where(table.c.chain_seq.is_(None)).order_by(table.c.id).limit(limit)))


def _records(result) -> list:
    """A result's rows as named tuples, which the lines read by attribute: reading a column of a Row by
    name costs about 0.5 µs, of a named tuple 0.03 µs, and a seal reads ten."""
    return list(map(_record_type(tuple(result.keys()))._make, result))


@functools.lru_cache(maxsize=32)
def _record_type(names: tuple[str, ...]) -> type:
    return collections.namedtuple("Record", names, rename=True)


def _seal_chain(hub, name: str, table, unsealed: Callable, line: Callable, batch: int) -> int:
    """Seal a chain's unsealed rows, `batch` at a time. Each batch is read and hashed outside the write lock
    (SQLite has one for the whole database, and intake and delivery wait for it); the lock is then taken only
    to check that the head is still the one the hashes continue, and to write them. Should another sealer (a
    `hub evidence` command) have sealed meanwhile, the batch is read and hashed again from the new head."""
    sealed = 0
    while True:
        with hub.reads() as session:
            head = _head(session, table)
            rows = unsealed(session, batch)
        if not rows:
            return sealed
        seals = chained(head, rows, line)
        with hub.sessions.begin() as session:
            _lock(session, name)
            if _head(session, table) != head:
                continue  # sealed meanwhile by another: again, from the new head
            write_seals(session, table, seals)
        sealed += len(rows)
        if len(rows) < batch:
            return sealed


def chained(head: tuple[int, str], rows, line: Callable) -> list[tuple[int, str, str, int]]:
    """The seals of `rows` (in order) continuing the chain from `head` (seq, chain hash): for each row,
    (seq, content hash, chain hash, row id)."""
    seq, previous = head
    seals = []
    for row in rows:
        seq += 1
        content_hash = sha256_text(line(seq, row))
        previous = link(previous, content_hash)
        seals.append((seq, content_hash, previous, row.id))
    return seals


def write_seals(session, table, seals: list[tuple[int, str, str, int]]) -> None:
    """The seals (chain_seq, content_hash, chain_hash, id) handed to the driver as they are (SQLAlchemy's
    processing of each row's parameters would cost more than the update itself): on PostgreSQL one UPDATE
    joined to the seals as arrays (an executemany there is a statement per row), sent in binary (`%b`: psycopg
    writes an array as text element by element, 7.4 ms for 500 seals, in binary 1.7 ms); on SQLite one
    executemany."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET chain_seq = s.seq, content_hash = s.content, chain_hash = s.chain "
            "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bigint[]) AS s(seq, content, chain, id) "
            f"WHERE {table.name}.id = s.id", tuple(list(column) for column in zip(*seals)))
    else:
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET chain_seq = ?, content_hash = ?, chain_hash = ? WHERE id = ?", seals)


def write_checkpoint(hub, *, now: dt.datetime | None = None) -> str:
    """Append a signed checkpoint of every chain's sealed head to the checkpoint files; returns the line.

    Refused (HubError, nothing written) when the chains contradict the last checkpoint of a file: a
    checkpoint written over a truncated or re-sealed chain would hide it."""
    current = heads(hub)
    for location in checkpoints.locations(hub.settings):
        try:
            previous = checkpoints.last(location, hub.signer.certificate)
        except ValueError as exc:
            raise HubError(f"no checkpoint written: {exc}") from None
        if previous is None:
            continue
        problems = checkpoints.contradictions(previous, current, lambda name, seq: hash_at(hub, name, seq))
        if problems:
            raise HubError("no checkpoint written: " + "; ".join(f"{name} chain: {problem}"
                                                              for name, _, problem in problems))
    line = checkpoints.encode(current, now or utcnow(), hub.signer)
    checkpoints.append(hub.settings, line)
    return line


# -- verification -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    chain: str        # timeline | audit | an app's chain (cases)
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
    checkpoints: list[str] = field(default_factory=list)   # each checkpoint compared with, described
    errors: list[str] = field(default_factory=list)        # what fails outside a chain (a checkpoint file)

    @property
    def ok(self) -> bool:
        return not self.errors and all(report.failure is None for report in self.chains.values())

    @property
    def first_failure(self) -> Failure | str | None:
        return next((r.failure for r in self.chains.values() if r.failure), None) or next(iter(self.errors), None)

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
        out.extend(f"compared with the {checkpoint}" for checkpoint in self.checkpoints)
        if not self.checkpoints and not self.errors:
            out.append("no checkpoint yet (the chains' heads are checkpointed every "
                       "HUB_EVIDENCE_CHECKPOINT_SECONDS by `hub serve`)")
        out.extend(f"checkpoint: FAILED: {error}" for error in self.errors)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


Progress = Callable[[str, int, int], None]  # (chain, done, total)


def verify_chains(hub, *, progress: Progress | None = None, now: dt.datetime | None = None) -> VerificationReport:
    """Walk every chain from entry 1; never seal. `now`: the time of the verification (default: the clock).

    Each entry's canonical line is rebuilt from the rows as stored and hashed, each link recomputed,
    and each digest of the timeline recomputed from the stored bytes (received, canonical, receipt,
    sent, partner's receipt); an entry that sealed a null digest for bytes of its kind requires the column
    to be still empty. A missing payload is accepted only for a message purged by retention: a PURGED
    event and a PURGE audit entry naming it, the route's retention elapsed between its first sealed
    RECEIVED event and the purge (looked up when the missing bytes are met, so a purge committed during
    the walk counts).
    Then, per chain: rows left unsealed longer than HUB_EVIDENCE_UNSEALED_SECONDS fail it, an app
    chain's check runs, and the chain must hold what the last checkpoint of each checkpoint file says.
    Each chain stops at its first failure, which it names."""
    now = now or utcnow()
    report = VerificationReport()
    report.chains["timeline"] = _verify_timeline(hub, progress, now)
    report.chains["audit"] = _walk(hub, "audit", AuditEntry.__table__, select(*_AUDIT_ROW),
                                   audit_line, _audit_entry, progress, "its actor, action, subject, detail or time")
    for chain in hub.chained_histories:
        report.chains[chain.name] = _walk(hub, chain.name, chain.table, chain.rows(),
                                          lambda seq, row, chain=chain: history_line(chain, seq, row),
                                          lambda row, chain=chain: f"{chain.table.name} row {row.id}", progress,
                                          "its fields")
    tables = chain_tables(hub)
    for name, chain_report in report.chains.items():
        chain_report.failure = chain_report.failure or _left_unsealed(hub, chain_report, tables[name], now)
    for chain in hub.chained_histories:
        chain_report = report.chains[chain.name]
        if chain_report.failure is None and chain.check is not None:
            with hub.sessions() as session:
                problem = next(iter(chain.check(session)), None)
            if problem:
                chain_report.failure = Failure(chain.name, chain_report.head_seq, "the state it records", problem)
    _compare_with_checkpoints(hub, report)
    return report


_AUDIT_ROW = (*_AUDIT_COLUMNS, AuditEntry.chain_seq, AuditEntry.content_hash, AuditEntry.chain_hash)


def _audit_entry(row) -> str:
    return f"audit entry {row.id} ({row.action} by {row.actor}, {row.subject or '-'})"


def _counts(session, table) -> tuple[int, int]:
    table = getattr(table, "__table__", table)
    total = session.scalar(select(func.count()).select_from(table).where(table.c.chain_seq.is_not(None)))
    unsealed = session.scalar(select(func.count()).select_from(table).where(table.c.chain_seq.is_(None)))
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


def _left_unsealed(hub, report: ChainReport, table, now: dt.datetime) -> Failure | None:
    """Rows written longer ago than HUB_EVIDENCE_UNSEALED_SECONDS and still unsealed: the sealer seals within
    a second, so their seal columns were emptied (after an edit?) or no sealer ran. Verify does not seal them."""
    limit = now - dt.timedelta(seconds=hub.settings.evidence_unsealed_seconds)
    stale = (table.c.chain_seq.is_(None), table.c.at < limit)
    with hub.sessions() as session:
        count = session.scalar(select(func.count()).select_from(table).where(*stale))
        if not count:
            return None
        first = session.execute(select(table.c.id, table.c.at).where(*stale).order_by(table.c.id).limit(1)).one()
    return Failure(report.chain, report.head_seq + 1, f"{table.name} row {first.id} (written {iso(first.at)})",
                   f"left unsealed ({count} row(s) of {table.name} unsealed for more than "
                   f"{hub.settings.evidence_unsealed_seconds:g} s): their seal columns were emptied, or no sealer "
                   f"ran (`hub serve` seals new rows within a second; verify never seals)")


def _compare_with_checkpoints(hub, report: VerificationReport) -> None:
    """The last checkpoint of each checkpoint file against the chains as walked (their hashes up to the head
    verified, so the stored chain hash at a checkpointed entry is the one the walk linked). A file with no
    checkpoint while another has one is an error (removed or emptied)."""
    walked = {name: (r.head_seq, r.head_hash) for name, r in report.chains.items() if r.failure is None}
    empty = []
    for location in checkpoints.locations(hub.settings):
        try:
            checkpoint = checkpoints.last(location, hub.signer.certificate)
        except ValueError as exc:
            report.errors.append(str(exc))
            continue
        if checkpoint is None:
            empty.append(location)
            continue
        report.checkpoints.append(str(checkpoint))
        for name, seq, problem in checkpoints.contradictions(checkpoint, walked,
                                                             lambda name, seq: hash_at(hub, name, seq)):
            report.chains[name].failure = Failure(name, seq, "compared with the last checkpoint", problem)
            walked.pop(name)
    if report.checkpoints or report.errors:
        report.errors.extend(f"checkpoint file {location} is missing or empty, while another holds checkpoints"
                             for location in empty)


def _verify_timeline(hub, progress: Progress | None, now: dt.datetime) -> ChainReport:
    report = ChainReport("timeline")
    with hub.sessions() as session:
        total, report.unsealed = _counts(session, Event)
    purge_recorded = _PurgeLookup(hub, now)
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
    """Why a message's missing bytes are not accounted for by a retention purge (None: they are). Asked when
    its bytes are found missing, not read once before the walk: a purge that commits while the walk runs is
    then found too (its rows are checked whether the sealer reached them yet or not; a row left unsealed
    too long fails its chain anyway). A purge accounts for them when the message has a PURGED event dated
    no later than the verification and at least the route's retention after the message's first sealed
    RECEIVED event (a RECEIVED event appended later cannot move the receipt back), and a PURGE audit entry
    lists the message."""

    def __init__(self, hub, now: dt.datetime):
        self.hub, self.now, self.known = hub, now, set()

    def __call__(self, message: Message) -> str | None:
        if message.id in self.known:
            return None
        problem = self._problem(message)
        if problem is None:
            self.known.add(message.id)
        return problem

    def _problem(self, message: Message) -> str | None:
        if message.purged_at is None:
            return "the message is not marked purged"
        with self.hub.sessions() as session:
            ours = Event.message_pk == message.id
            purged = session.scalar(select(Event.at).where(ours, Event.kind == timeline.PURGED)
                                    .order_by(Event.id).limit(1))
            received = session.scalar(select(Event.at).where(ours, Event.kind == timeline.RECEIVED,
                                                             Event.chain_seq.is_not(None))
                                      .order_by(Event.chain_seq).limit(1))
            audited = [detail for detail in session.scalars(
                select(AuditEntry.detail).where(AuditEntry.action == "PURGE",
                                                AuditEntry.detail.contains(message.message_id)))
                       if _lists(detail, message)]
        if purged is None:
            return "no PURGED event of this message"
        if not audited:
            return "no PURGE audit entry names this message"
        days = retention_days(self.hub, message.type)
        if received is None or purged < received + dt.timedelta(days=days):
            return (f"its PURGED event is dated {iso(purged)}, before the route's retention of {days} days since "
                    f"its receipt ({iso(received) if received else 'no sealed RECEIVED event'}) had elapsed")
        if purged > self.now + dt.timedelta(seconds=self.hub.settings.evidence_unsealed_seconds):
            return f"its PURGED event is dated {iso(purged)}, after this verification ({iso(self.now)})"
        return None


def _lists(detail: str, message: Message) -> bool:
    """Does a PURGE audit entry's detail ("...: id, id, ...") list the message (as sender/id, or its id alone)?"""
    names = {name.strip() for name in detail.rpartition(": ")[2].split(",")}
    return f"{message.sender}/{message.message_id}" in names or message.message_id in names


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
                  purge_recorded: Callable[[Message], str | None], file_digest: Callable[[str], str | None] | None = None
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
        unaccounted = purge_recorded(message)
        if unaccounted is None:
            report.purged += 1
            return None
        return (f"the {what} are missing from the store, and no retention purge of this message is recorded "
                f"({unaccounted})")
    actual = hashlib.sha256(stored).hexdigest()
    if actual != event.digest:
        return f"the stored {what} have sha256 {actual[:16]}…, the chain sealed {event.digest[:16]}… (changed since)"
    report.digests_checked += 1
    return None


def _walk(hub, chain: str, table, rows, line_of: Callable[[int, object], str], what_of: Callable[[object], str],
          progress: Progress | None, fields: str = "its fields") -> ChainReport:
    """Walk a chain whose entries are rows of one table (the audit log, an app's history): gaps, lines, links."""
    report = ChainReport(chain)
    with hub.sessions() as session:
        total, report.unsealed = _counts(session, table)
    previous, last = ZERO_HASH, 0
    while True:
        with hub.sessions() as session:
            batch = session.execute(rows.where(table.c.chain_seq > last).order_by(table.c.chain_seq)
                                    .limit(_BATCH)).all()
        if not batch:
            break
        for row in batch:
            seq, what = row.chain_seq, what_of(row)
            report.failure = _gap(report, seq, what)
            if report.failure:
                return report
            problem = _check_link(report, seq, row, line_of(seq, row), previous, fields)
            if problem:
                report.failure = Failure(chain, seq, what, problem)
                return report
            previous, report.head_seq, report.head_hash = row.chain_hash, seq, row.chain_hash
            report.entries += 1
        last = batch[-1].chain_seq
        if progress:
            progress(chain, report.entries, total)
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

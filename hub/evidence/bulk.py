"""A history written in bulk: N stored messages with their deliveries and sealed timeline, fast (benchmarks).

A hub that has run for a while holds a large history; intake and the search API must not slow
down with it. Intake at a few hundred messages/s would need hours to store a million, so the rows
are written in bulk instead (SQLite: `executemany` in large transactions; PostgreSQL: `COPY`), as
intake and delivery would have left them:

    messages    one row each, DELIVERED (one in 50 DEAD), received over the last 30 days (younger than
                any retention rule, so the scheduler does not purge them during a run); a mix of four
                routes (licence requests to NARSA and NARSA's results, civil-status requests to
                ETAT_CIVIL, judicial requests from JUSTICE), ten messages per case
    deliveries  one per message, final (DELIVERED with the bytes sent and the partner's answer, or
                DEAD with its error): no delivery is left PENDING, so the hub's workers have nothing
                of the history to send
    events      the timeline intake and delivery write (RECEIVED, VALIDATED, VERIFIED, ACCEPTED,
                QUEUED, then SENT and PARTNER_RECEIPT, or DEAD_LETTERED), already sealed: each row's
                chain_seq, content_hash and chain_hash are computed here with hub/evidence/chains.py's own
                functions, continuing the chain from its head, so `hub evidence verify` accepts them

The payloads are filler of realistic size (~3.5 KB): one licence request signed once by REGISTRY (the
caller's `Template`), copied with each message's id, case, type and recipient written in, and the hub's
receipt for it (signed here, with the hub's key) copied the same way. Their XML signatures therefore
do not verify: the rows exist to give the tables and indexes their size, and the hub never re-verifies
stored bytes. Their message ids carry
a `-P<tag>-` part, so they are told apart from real traffic. Run it with no hub writing to the
database (the chain is continued from its head); a database with unsealed timeline rows is refused.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from hub.evidence import chains as evidence
from hub.evidence import timeline
from hub.errors import PreloadRefused
from hub.store.db import make_engine, migrate
from hub.trust import pki
from hub.trust.receipts import build_receipt
from hub.trust.signing import Signer

BATCH = 5000                      # messages per transaction (SQLite) or COPY round (PostgreSQL)
HISTORY = dt.timedelta(days=30)   # received_at spread over this span, ending now
DEAD_EVERY = 50                   # one message in 50 dead-lettered

MESSAGE_COLUMNS = ("id", "message_id", "sender", "recipient", "type", "correlation_id", "in_reply_to", "state",
                   "digest", "received_bytes", "canonical_bytes", "receipt", "received_at", "updated_at",
                   "purged_at")
DELIVERY_COLUMNS = ("id", "message_pk", "partner", "mapping", "schema_name", "operation", "state", "attempts",
                    "next_attempt_at", "lease_owner", "lease_expires_at", "last_error", "sent_bytes",
                    "partner_receipt", "partner_reference", "delivered_at")
EVENT_COLUMNS = ("id", "message_pk", "delivery_id", "at", "kind", "detail", "digest", "chain_seq", "content_hash",
                 "chain_hash")


@dataclass(frozen=True)
class Kind:
    """One route of the mix: the header fields written into the template, and the delivery's target."""
    code: str
    type: str
    sender: str
    recipient: str
    answers: int | None = None    # this position in a case answers the message at that position


# Position in a case of ten (index % 10) -> what that message is.
KINDS = ([Kind("LIC", "LicenceAuthenticationRequest", "REGISTRY", "NARSA")] * 6
         + [Kind("LICR", "LicenceAuthenticationResult", "NARSA", "REGISTRY", answers=0),
            Kind("LICR", "LicenceAuthenticationResult", "NARSA", "REGISTRY", answers=1),
            Kind("ECR", "CivilStatusExtractRequest", "REGISTRY", "ETAT_CIVIL"),
            Kind("JSR", "JudicialServiceRequest", "JUSTICE", "REGISTRY")])

PARTNER_ANSWER = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Acknowledgement><Reference>{ref}</Reference>'
                  b'<Status>RECEIVED</Status><ReceivedAt>{at}</ReceivedAt></Acknowledgement>')


@dataclass
class Template:
    """The signed request and the hub's receipt that every preloaded message is copied from."""
    message: bytes
    receipt: bytes
    message_id: bytes
    reference: bytes
    digest: bytes

    @classmethod
    def build(cls, pki_dir: Path, message: bytes, message_id: str, reference: str) -> "Template":
        """From a signed LicenceAuthenticationRequest from REGISTRY (`message`, with that id and case), and the
        hub's receipt for it, signed with the hub's key found in `pki_dir`."""
        digest = hashlib.sha256(message).hexdigest()
        pki_dir = Path(pki_dir)
        signer = Signer(pki.load_key(str(pki_dir / "hub.key")), pki.load_certificate(str(pki_dir / "hub.crt")))
        receipt = build_receipt(signer, message_id=message_id, sender="REGISTRY", digest=digest,
                                received_at=dt.datetime.now(dt.timezone.utc))
        return cls(message, receipt, message_id.encode(), reference.encode(), digest.encode())


@dataclass
class Start:
    """Where the new rows begin: the next free ids and the head of the timeline chain."""
    message_id: int = 1
    delivery_id: int = 1
    event_id: int = 1
    chain_seq: int = 0
    chain_hash: str = evidence.ZERO_HASH


class Generator:
    """Builds the rows of a preload batch by batch, sealing their events in order: batches must be asked
    for in order (first = 0, then first + count of the one before), as the chain links each to the last."""

    def __init__(self, template: Template, start: Start, total: int, tag: str, now: dt.datetime):
        self.t, self.start, self.total, self.tag = template, start, total, tag
        self.first_at = now - HISTORY
        self.step = HISTORY / max(total, 1)
        self.seq, self.previous = start.chain_seq, start.chain_hash   # the chain as sealed so far
        self._events_before = 0                                        # events of earlier batches

    def message_id(self, index: int) -> str:
        kind = KINDS[index % 10]
        return f"{kind.sender}-{kind.code}-P{self.tag}-{index:08d}"

    def case(self, index: int) -> str:
        return f"LIC-P{self.tag}-{index // 10:08d}"

    def batch(self, first: int, count: int) -> tuple[list, list, list]:
        messages, deliveries, events = [], [], []
        t = self.t
        for index in range(first, first + count):
            kind = KINDS[index % 10]
            pk = self.start.message_id + index
            delivery_pk = self.start.delivery_id + index
            message_id = self.message_id(index)
            case = self.case(index)
            in_reply_to = self.message_id(index - index % 10 + kind.answers) if kind.answers is not None else None
            data = (t.message.replace(t.message_id, message_id.encode()).replace(t.reference, case.encode())
                    .replace(b"<env:Type>LicenceAuthenticationRequest<", f"<env:Type>{kind.type}<".encode())
                    .replace(b"<env:Sender>REGISTRY<", f"<env:Sender>{kind.sender}<".encode())
                    .replace(b"<env:Recipient>NARSA<", f"<env:Recipient>{kind.recipient}<".encode()))
            digest = hashlib.sha256(data).hexdigest()
            receipt = (t.receipt.replace(t.message_id, message_id.encode()).replace(t.digest, digest.encode())
                       .replace(b"<env:Sender>REGISTRY<", f"<env:Sender>{kind.sender}<".encode()))
            received = self.first_at + self.step * index
            dead = index % DEAD_EVERY == DEAD_EVERY - 1
            final = received + dt.timedelta(milliseconds=180)
            state = "DEAD" if dead else "DELIVERED"
            messages.append((pk, message_id, kind.sender, kind.recipient, kind.type, case, in_reply_to, state,
                             digest, data, None, receipt, received, final, None))
            if dead:
                error = f"{kind.recipient} refused the message: HTTP 422 (permanent)"
                deliveries.append((delivery_pk, pk, kind.recipient, None, None, None, "DEAD", 1, received, None, None,
                                   error, None, None, None, None))
            else:
                answer = PARTNER_ANSWER.replace(b"{ref}", case.encode()).replace(
                    b"{at}", final.isoformat(timespec="milliseconds").encode())
                deliveries.append((delivery_pk, pk, kind.recipient, None, None, None, "DELIVERED", 1, received, None,
                                   None, None, data, answer, f"{kind.recipient}-{index:08d}", final))
            steps = [(timeline.RECEIVED, f"{len(data)} bytes", None, digest),
                     (timeline.VALIDATED, "envelope and business document", None, None),
                     (timeline.VERIFIED, f"signed by {kind.sender}", None, None)]
            if in_reply_to:
                steps.append((timeline.CORRELATED, f"answers {in_reply_to} in case {case}", None, None))
            steps += [(timeline.ACCEPTED, f"sha256 {digest[:16]}…, receipt signed", None,
                       hashlib.sha256(receipt).hexdigest()),
                      (timeline.QUEUED, f"for {kind.recipient}", delivery_pk, None)]
            if dead:
                steps.append((timeline.DEAD_LETTERED, error, delivery_pk, None))
            else:
                steps += [(timeline.SENT, f"to {kind.recipient} over REST: HTTP 200 (attempt 1)", delivery_pk, digest),
                          (timeline.PARTNER_RECEIPT, f"{len(answer)} bytes from {kind.recipient}", delivery_pk,
                           hashlib.sha256(answer).hexdigest())]
            sent_from = len(steps) - (1 if dead else 2)  # the delivery's events come later than intake's
            for offset, (kind_name, detail, delivery_id, event_digest) in enumerate(steps):
                at = received + dt.timedelta(microseconds=offset * 1500 + (150_000 if offset >= sent_from else 0))
                self.seq += 1
                event = SimpleNamespace(at=at, delivery_id=delivery_id, kind=kind_name, detail=detail,
                                        digest=event_digest)
                partner = kind.recipient if delivery_id else None
                content = evidence.sha256_text(evidence.event_line(self.seq, event, message_id, kind.sender, case,
                                                                   partner))
                self.previous = evidence.link(self.previous, content)
                events.append([self.start.event_id + len(events) + self._events_before, pk, delivery_id, at,
                               kind_name, detail, event_digest, self.seq, content, self.previous])
        self._events_before += len(events)
        return messages, deliveries, events


# -- writers ----------------------------------------------------------------------------------------

class SqliteWriter:
    """executemany in one transaction per batch, on the hub's own file (journal off while loading)."""

    def __init__(self, path: str):
        import sqlite3
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-262144")  # 256 MB

    def start(self) -> Start:
        return _start(lambda sql: self.conn.execute(sql).fetchone())

    def write(self, messages: list, deliveries: list, events: list) -> None:
        c = self.conn
        c.execute("BEGIN")
        c.executemany(_insert("messages", MESSAGE_COLUMNS), [_sqlite_row(r) for r in messages])
        c.executemany(_insert("deliveries", DELIVERY_COLUMNS), [_sqlite_row(r) for r in deliveries])
        c.executemany(_insert("events", EVENT_COLUMNS), [_sqlite_row(r) for r in events])
        c.execute("COMMIT")

    def finish(self) -> None:
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()


def _sqlite_row(row) -> tuple:
    """SQLAlchemy's SQLite DateTime storage: naive UTC, 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return tuple(v.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
                 if isinstance(v, dt.datetime) else v for v in row)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


# Binary COPY needs each column's type (character varying shares text's binary form).
COPY_TYPES = {"id": "int8", "message_pk": "int8", "delivery_id": "int8", "chain_seq": "int8", "attempts": "int4",
              **{c: "bytea" for c in ("received_bytes", "canonical_bytes", "receipt", "sent_bytes", "partner_receipt")},
              **{c: "timestamptz" for c in ("received_at", "updated_at", "purged_at", "next_attempt_at",
                                            "lease_expires_at", "delivered_at", "at")}}


class PostgresWriter:
    """COPY ... FROM STDIN (binary) per table per batch, one transaction per batch; sequences moved past the ids."""

    def __init__(self, url: str):
        import psycopg
        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))  # libpq URI, options too
        self.conn.execute("SET synchronous_commit = off")
        self.conn.execute("SET default_toast_compression = lz4")

    def start(self) -> Start:
        with self.conn.cursor() as cur:
            start = _start(lambda sql: cur.execute(sql).fetchone())
        self.conn.commit()
        return start

    def write(self, messages: list, deliveries: list, events: list) -> None:
        with self.conn.cursor() as cur:
            for table, columns, rows in (("messages", MESSAGE_COLUMNS, messages),
                                         ("deliveries", DELIVERY_COLUMNS, deliveries),
                                         ("events", EVENT_COLUMNS, events)):
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types([COPY_TYPES.get(c, "text") for c in columns])
                    for row in rows:
                        copy.write_row(row)
        self.conn.commit()

    def finish(self) -> None:
        self.conn.autocommit = True
        for table in ("messages", "deliveries", "events"):
            self.conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
            self.conn.execute(f"VACUUM ANALYZE {table}")  # statistics, and the visibility map for index-only scans
        self.conn.close()


def _start(fetch: Callable[[str], tuple]) -> Start:
    unsealed = fetch("SELECT count(*) FROM events WHERE chain_seq IS NULL")[0]
    if unsealed:
        raise PreloadRefused(f"the timeline has {unsealed} unsealed row(s): let the hub seal them "
                             "(`hub evidence verify`) and stop it before preloading")
    head = fetch("SELECT chain_seq, chain_hash FROM events WHERE chain_seq IS NOT NULL "
                 "ORDER BY chain_seq DESC LIMIT 1")
    next_id = lambda table: fetch(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")[0]  # noqa: E731
    return Start(next_id("messages"), next_id("deliveries"), next_id("events"),
                 head[0] if head else 0, head[1] if head else evidence.ZERO_HASH)


def writer_for(url: str):
    from sqlalchemy.engine import make_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteWriter(parsed.database)
    return PostgresWriter(url)


# -- the whole fill ---------------------------------------------------------------------------------

def preload(database_url: str, count: int, template: Template, *, tag: str | None = None,
            on_progress: Callable[[int], None] | None = None) -> dict:
    """Migrate the database, then store `count` messages copied from `template` with their deliveries and
    sealed timeline. Returns what was written and how long it took (the tag is in every preloaded message id)."""
    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    tag = (tag or uuid.uuid4().hex[:6]).upper()
    started = time.perf_counter()
    writer = writer_for(database_url)
    start = writer.start()
    generator = Generator(template, start, count, tag, dt.datetime.now(dt.timezone.utc))
    events = 0
    for first in range(0, count, BATCH):
        rows = generator.batch(first, min(BATCH, count - first))
        writer.write(*rows)
        events += len(rows[2])
        if on_progress:
            on_progress(first + len(rows[0]))
    writer.finish()
    return {"messages": count, "events": events, "tag": tag, "first_message_pk": start.message_id,
            "chain_head": generator.seq, "seconds": round(time.perf_counter() - started, 1)}

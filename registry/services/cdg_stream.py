"""Large life-certificate batches for CDG, written and applied as streams, exchanged as files by the hub.

Why a path of its own: a batch of up to MAX_ITEMS (1,000) certificates travels like every other
exchange: one canonical message through hub intake (1 MiB, 50,000-element caps), mapped by XSLT,
signed, uploaded, and CDG's AccuseLot comes back through intake. A batch of 100,000 is about 35 MB in
CDG's format and its acknowledgement 11 MB: over every cap, and as lxml trees several hundred
megabytes. So a batch with more than MAX_ITEMS cases (up to MAX_STREAMED_ITEMS) takes this path, in
which nothing is ever held whole, and the hub carries it as a message that keeps its bytes in a file
(a claim check, hub/intake/files.py):

  * prepare   cases ISSUED -> BATCHED with set-based statements (ids read first, then one UPDATE
              per 1,000, the history by INSERT ... SELECT);
  * write     the LotCertificatsVie is written straight from a streamed query, in exclusive-c14n
              form, by hub.trust.streaming.CanonicalWriter, and signed with the registry's key (as the
              registry signs every message it submits): the same content as mapping
              cdg/life-certificate-batch.to-cdg.xsl gives, which a test checks. The file is kept under
              `<var>/cdg/batches/<reference>.xml` and re-used as is when the batch is submitted again;
  * submit    `Hub.receive(Arrival(path=...))`: the hub reads it as a stream (CDG's XSD, the registry's signature),
              keeps it in its file store, answers with a receipt signed over the file's SHA-256 and
              queues its delivery: the batch is SUBMITTED. The hub's delivery workers sign it as the hub
              (a streamed step of the engine) and upload it through the SFTP connector's `send_file`,
              with CDG's retry policy and circuit breaker; CDG deduplicates by batch id;
  * acknowledgement   CDG's AR_<lot>.xml is taken in by the hub: a small one as a canonical message
              (life_certificates.apply_acknowledgement), a large one as a file message, verified while
              the hub read it (XSD, CDG's signature by the hub's trust rules) and handed to the registry
              as a file (`take_acknowledgement`): read with iterparse, each line's verdict kept compactly
              (case id, result, reason; about 20 MB per 100,000 verdicts, hence the cap of
              MAX_STREAMED_ITEMS), then applied in one transaction, 1,000 lines at a time: the lines with
              the same verdict are one UPDATE of their cases and one INSERT ... SELECT of their history (a
              row-by-row executemany was 4x slower), and the batch ACKNOWLEDGED.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

from lxml import etree
from sqlalchemy import Text, cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB

from connectors.base import OutboundFile
from hub.errors import PermanentDeliveryError, SchemaInvalid
from hub.intake.door import Arrival, FileHeader
from hub.store.db import utcnow
from hub.trust.streaming import CanonicalWriter, escape_text
from registry.canonical import PARTY
from registry.models import Case, CaseEvent, Citizen, PensionBatch

log = logging.getLogger("registry.life_certificates.stream")

PARTNER = "CDG"
BATCH_TYPE = "LifeCertificateBatch"
ACK_TYPE = "LifeCertificateBatchAcknowledgement"
CERTIFICATE, DEATH_NOTICE = "LIFE_CERTIFICATE", "DEATH_NOTICE"
CDG_NS = "urn:ma:cdg:certificats-vie:1"
MAX_STREAMED_ITEMS = 100_000   # one streamed batch (peak memory grows ~20 MB per 100,000); more make several
CHUNK = 1000                   # rows per bulk statement
_C = f"{{{CDG_NS}}}"
REFERENCE, STATUS, REASON, REASON_TEXT = (f"{_C}{name}"
                                          for name in ("Reference", "Statut", "CodeMotif", "LibelleMotif"))


def batch_path(hub, reference: str) -> Path:
    """The registry's file of a streamed batch, as it signed it (the hub keeps its own copy)."""
    return hub.settings.var_dir / "cdg" / "batches" / f"{reference}.xml"


# -- prepare ------------------------------------------------------------------------------------------

def prepare(registry, case_ids: list[int]) -> str:
    """Record a batch of these ISSUED cases and move them to BATCHED with set-based statements (one
    transaction): an UPDATE per CHUNK ids (the batch reference added to `details` by the database's
    own JSON functions), their history rows by INSERT ... SELECT, the kinds counted by GROUP BY."""
    cases, events = Case.__table__, CaseEvent.__table__
    with registry.hub.sessions.begin() as session:
        batch = PensionBatch(reference=f"PENDING-{os.urandom(8).hex()}", message_id=f"PENDING-{os.urandom(8).hex()}",
                                status="PREPARED", certificates=0, death_notices=0,
                                created_at=utcnow().replace(microsecond=0))
        session.add(batch)
        session.flush()
        batch.reference = f"LCB-{batch.created_at:%Y}-{batch.id:06d}"
        batch.message_id = f"REGISTRY-{batch.reference}"
        now, note = utcnow(), f"in batch {batch.reference}"
        details = _with_batch(session.get_bind().dialect.name, cases.c.details, batch.reference)
        for start in range(0, len(case_ids), CHUNK):
            chunk = case_ids[start:start + CHUNK]
            session.execute(update(cases).where(cases.c.id.in_(chunk), cases.c.status == "ISSUED")
                            .values(status="BATCHED", request_message_id=batch.message_id, updated_at=now,
                                    details=details))
        ours = (cases.c.request_message_id == batch.message_id, cases.c.status == "BATCHED")
        session.execute(insert(events).from_select(
            ["case_id", "at", "status", "actor", "note"],
            select(cases.c.id, literal(now, events.c.at.type), literal("BATCHED"), literal("registry"),
                   literal(note)).where(*ours)))
        kind = cases.c.details["kind"].as_string()
        kinds = dict(session.execute(select(kind, func.count()).where(*ours).group_by(kind)).all())
        batch.certificates, batch.death_notices = kinds.get(CERTIFICATE, 0), kinds.get(DEATH_NOTICE, 0)
        return batch.reference


def _with_batch(dialect: str, column, reference: str):
    """`details` with "batch": reference added, computed by the database (no row read into Python)."""
    if dialect == "postgresql":
        return cast(cast(column, JSONB).op("||")(func.jsonb_build_object("batch", cast(literal(reference), Text))),
                    column.type)
    return func.json_set(column, "$.batch", literal(reference))


# -- write --------------------------------------------------------------------------------------------

def _jma(iso: str) -> str:
    return f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}"


def _certificate(reference, post, details, given, family, birth_date, cnie) -> str:
    cnie_part = f"<CNIE>{escape_text(cnie)}</CNIE>" if cnie else ""
    return (f"<Certificat><Reference>{escape_text(reference)}</Reference>"
            f"<NomPensionne>{escape_text(family)}</NomPensionne><PrenomPensionne>{escape_text(given)}</PrenomPensionne>"
            f"<DateNaissance>{_jma(birth_date.isoformat())}</DateNaissance>{cnie_part}"
            f"<NumeroPension>{escape_text(details['pension_number'])}</NumeroPension>"
            f"<Caisse>{escape_text(details['fund'])}</Caisse>"
            f"<DateEtablissement>{_jma(details['issue_date'])}</DateEtablissement>"
            f"<PosteConsulaire>{escape_text(post or '')}</PosteConsulaire></Certificat>")


def _death_notice(reference, details) -> str:
    deceased = details["deceased"]
    return (f"<Avis><Reference>{escape_text(reference)}</Reference>"
            f"<NumeroPension>{escape_text(details['pension_number'])}</NumeroPension>"
            f"<Caisse>{escape_text(details['fund'])}</Caisse>"
            f"<NomDefunt>{escape_text(deceased['family'])}</NomDefunt>"
            f"<PrenomDefunt>{escape_text(deceased['given'])}</PrenomDefunt>"
            f"<DateDeces>{_jma(details['date_of_death'])}</DateDeces></Avis>")


def write_batch(registry, reference: str) -> tuple[Path, int, str]:
    """The LotCertificatsVie of a recorded batch, signed by the registry, written to the registry's file
    for it (kept when it is already there); returns (path, size, sha256)."""
    hub = registry.hub
    path = batch_path(hub, reference)
    if path.exists():
        return path, path.stat().st_size, _file_digest(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with hub.sessions() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)).one()
        session.expunge(batch)
    query = (select(Case.reference, Case.post_code, Case.details, Citizen.given_name_latin, Citizen.family_name_latin,
                    Citizen.birth_date, Citizen.cnie)
             .outerjoin(Citizen, Citizen.id == Case.citizen_id)
             .where(Case.request_message_id == batch.message_id).order_by(Case.id)
             .execution_options(yield_per=2000))
    temporary = path.with_name(f".{path.name}.part")
    counts = {CERTIFICATE: 0, DEATH_NOTICE: 0}
    with open(temporary, "wb") as out, tempfile.SpooledTemporaryFile(1024 * 1024, dir=path.parent) as notices:
        writer = CanonicalWriter(out, "LotCertificatsVie", CDG_NS)
        writer.leaf("IdentifiantMessage", batch.message_id)
        writer.leaf("IdentifiantLot", batch.reference)
        writer.leaf("DateCreation", batch.created_at.isoformat(timespec="seconds"))
        writer.leaf("NombreCertificats", str(batch.certificates))
        writer.leaf("NombreAvisDeces", str(batch.death_notices))
        writer.start("Certificats")
        spooled = []
        with hub.streamed_reads() as session:  # a read: on SQLite, no write lock held while the file is written
            for case_ref, post, details, given, family, birth_date, cnie in session.execute(query):
                kind = details.get("kind")
                counts[kind] = counts.get(kind, 0) + 1
                if kind == DEATH_NOTICE:
                    spooled.append(_death_notice(case_ref, details))
                    if len(spooled) >= CHUNK:
                        notices.write("".join(spooled).encode())
                        spooled.clear()
                else:
                    writer.fragment(_certificate(case_ref, post, details, given, family, birth_date, cnie))
        notices.write("".join(spooled).encode())
        writer.end("Certificats")
        writer.start("AvisDeces")
        notices.seek(0)
        while chunk := notices.read(1024 * 1024):
            writer.canonical(chunk)
        writer.end("AvisDeces")
        if (counts[CERTIFICATE], counts[DEATH_NOTICE]) != (batch.certificates, batch.death_notices):
            raise RuntimeError(f"batch {reference}: {counts} cases found, {batch.certificates} certificates and "
                               f"{batch.death_notices} death notices recorded")
        size, digest = writer.finish(registry.signer)  # the registry's own key: the hub signs what it sends
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path, size, digest


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# -- submitted to the hub as a file --------------------------------------------------------------------

def submit(registry, batch: PensionBatch):
    """Write (or re-use) the batch file and submit it to the hub as a file; returns the hub's receipt.
    Raises InputError (refused) or TryLater (CDG's outbox is full), as `Registry.submit` does."""
    path, size, digest = write_batch(registry, batch.reference)
    header = FileHeader(message_id=batch.message_id, type=BATCH_TYPE, correlation_id=batch.reference, sender=PARTY,
                        recipient=PARTNER)
    receipt = registry.hub.receive(Arrival("registry", path=path, caller=PARTY, header=header))
    log.info("batch %s accepted by the hub as a file (%d bytes)", batch.reference, size)
    return receipt


def describe(registry, batch: PensionBatch) -> str:
    path = batch_path(registry.hub, batch.reference)
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return f"a file of {path.stat().st_size} bytes, sha256 {digest.hexdigest()}"


# -- CDG's acknowledgement, handed over by the hub as a file ---------------------------------------------

class _Hashing:
    """A reader that hashes what is read: the file must be the one the hub vouches for."""

    def __init__(self, source):
        self.source, self.digest = source, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n if n and n > 0 else 1024 * 1024)
        self.digest.update(data)
        return data


def receive_file(registry, delivered: OutboundFile) -> None:
    """The registry's consumer of the hub's file messages (`Hub.attach_local_consumer(..., files=)`)."""
    if delivered.message_type != ACK_TYPE:
        raise PermanentDeliveryError(f"the registry does not consume {delivered.message_type} as a file")
    take_acknowledgement(registry, delivered)


def take_acknowledgement(registry, delivered: OutboundFile) -> dict:
    """Apply CDG's acknowledgement of a batch, a file the hub verified (XSD, CDG's signature) when it took it
    in; returns what was done, with the seconds spent reading and applying. An acknowledgement that names
    no batch, or another batch's message, cannot be applied (PermanentDeliveryError: dead-lettered)."""
    header: dict[str, str] = {}
    verdicts: list[tuple[int, str, str | None, str | None]] = []
    unknown: list[str] = []
    results = {"ACCEPTED": 0, "REJECTED": 0}
    statuses = {"ACCEPTE": "ACCEPTED", "REJETE": "REJECTED"}
    state: dict = {}
    started = time.perf_counter()

    def members() -> dict[str, int]:  # the batch's cases, read once the header named the batch
        if "members" not in state:
            state["batch"] = _batch_answered(registry, header, delivered.message_id)
            with registry.hub.sessions() as session:
                state["members"] = dict(session.execute(select(Case.reference, Case.id).where(
                    Case.request_message_id == state["batch"].message_id, Case.status == "BATCHED")).all())
        return state["members"]

    with open(delivered.path, "rb") as raw:
        source = _Hashing(raw)
        for _event, element in etree.iterparse(source, events=("end",), resolve_entities=False, load_dtd=False,
                                               no_network=True, huge_tree=False, remove_comments=True):
            parent = element.getparent()
            if parent is None or parent.getparent() is not None or not element.tag.startswith(_C):
                continue  # the root, a line's fields (read with their line), CDG's signature
            local = element.tag[len(_C):]
            if local == "Ligne":
                fields = {child.tag: child.text for child in element}  # one pass (findtext costs 4x more)
                case_reference = (fields.get(REFERENCE) or "").strip()
                status = (fields.get(STATUS) or "").strip()
                result = statuses.get(status)
                if result is None:
                    raise SchemaInvalid(f"line {case_reference!r} has Statut {status!r}, not ACCEPTE or REJETE")
                case_id = members().pop(case_reference, None)
                if case_id is None:
                    unknown.append(case_reference)
                else:
                    results[result] += 1
                    reason = fields.get(REASON)
                    verdicts.append((case_id, result, reason.strip() if reason else None, fields.get(REASON_TEXT)))
            else:
                header[local] = (element.text or "").strip()
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del parent[0]
        while source.read(1024 * 1024):
            pass
    if source.digest.hexdigest() != delivered.sha256:
        raise PermanentDeliveryError(f"{delivered.path} is not the file the hub vouches for "
                                     f"(sha256 {source.digest.hexdigest()}, expected {delivered.sha256})")
    left = members()
    batch = state["batch"]
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    detail = _apply(registry, batch.reference, header, verdicts, results, left, unknown, delivered)
    apply_seconds = time.perf_counter() - started
    log.info(detail)
    return {"lines": len(verdicts) + len(unknown), **results, "unknown": len(unknown), "left": len(left),
            "sha256": delivered.sha256, "read_seconds": read_seconds, "apply_seconds": apply_seconds,
            "detail": detail}


def _batch_answered(registry, header: dict, message_id: str) -> PensionBatch:
    reference, answers = header.get("IdentifiantLot"), header.get("ReferenceMessage")
    with registry.hub.sessions() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)).first()
        if batch is None:
            raise PermanentDeliveryError(f"acknowledgement {message_id} names batch {reference!r}, which is no batch")
        if batch.message_id != answers:
            raise PermanentDeliveryError(f"acknowledgement {message_id} of batch {reference} answers message "
                                         f"{answers!r}, not {batch.message_id}")
        session.expunge(batch)
        return batch


def _apply(registry, reference, header, verdicts, results, left, unknown, delivered: OutboundFile) -> str:
    """The verdicts, in one transaction, CHUNK lines at a time: within a chunk the lines with the same
    verdict (result, reason) are one UPDATE of their cases and one INSERT ... SELECT of their history
    rows; then the batch ACKNOWLEDGED."""
    hub = registry.hub
    partner_reference = header["IdentifiantAccuse"]
    cases, events = Case.__table__, CaseEvent.__table__
    now = utcnow()
    with hub.sessions.begin() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)
                                .with_for_update()).one()
        if batch.status == "ACKNOWLEDGED":
            return f"batch {reference} was already acknowledged"
        for start in range(0, len(verdicts), CHUNK):
            groups: dict[tuple, list[int]] = {}
            for case_id, result, reason, text in verdicts[start:start + CHUNK]:
                groups.setdefault((result, reason, text), []).append(case_id)
            for (result, reason, text), ids in groups.items():
                outcome = {"result": result, "reason": reason, "reason_text": text, "batch": reference,
                           "acknowledgement": partner_reference}
                note = f"{result.lower()} by CDG in {partner_reference}" + (f": {reason}" if reason else "")
                # FAILED: the batch was dead-lettered, resent, and CDG answered late
                waiting = cases.c.status.in_(("BATCHED", "FAILED"))
                session.execute(update(cases).where(cases.c.id.in_(ids), waiting).values(
                    status=result, updated_at=now, partner_reference=partner_reference,
                    outcome=literal(outcome, cases.c.outcome.type)))
                session.execute(insert(events).from_select(
                    ["case_id", "at", "status", "actor", "note"],
                    select(cases.c.id, literal(now, events.c.at.type), literal(result), literal(PARTNER),
                           literal(note)).where(cases.c.id.in_(ids))))
        batch.status, batch.acknowledged_at = "ACKNOWLEDGED", now
        batch.accepted, batch.rejected = results["ACCEPTED"], results["REJECTED"]
        batch.partner_reference = partner_reference
        batch.detail = (f"{len(verdicts)} cases moved" + (f"; {len(left)} not in the acknowledgement" if left else "")
                        + (f"; unknown references {', '.join(unknown[:10])}" if unknown else "")
                        + f"; acknowledgement {delivered.message_id} kept by the hub as a file "
                          f"(sha256 {delivered.sha256})")
        return (f"batch {reference} acknowledged by CDG (streamed): {results['ACCEPTED']} accepted, "
                f"{results['REJECTED']} rejected ({batch.detail})")


def attach(registry) -> None:
    """CDG's acknowledgements too large to hold come from the hub as files (at registry start)."""
    registry.hub.attach_local_consumer(PARTY, files=lambda delivered: receive_file(registry, delivered))

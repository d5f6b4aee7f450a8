"""Large life-certificate batches for CDG, written, sent and acknowledged as streams.

Why a path of its own: a batch of up to MAX_ITEMS (1,000) certificates travels like every other
exchange: one canonical message through hub intake (1 MiB, 50,000-element caps), mapped by XSLT,
signed, uploaded, and CDG's AccuseLot comes back through intake. A batch of 100,000 is about 35 MB in
CDG's format and its acknowledgement 11 MB: over every cap, and as lxml trees several hundred
megabytes. So a batch with more than MAX_ITEMS cases (up to MAX_STREAMED_ITEMS) takes this path, in
which nothing is ever held whole:

  * prepare   cases ISSUED -> BATCHED with set-based statements (ids read first, then one UPDATE
              per 1,000, the history by INSERT ... SELECT);
  * write     the LotCertificatsVie is written straight from a streamed query, in exclusive-c14n
              form, by hub.trust.streaming.CanonicalWriter: the digest of the written bytes is the
              signature's reference digest, and SignedInfo is signed with the hub's key, as the hub
              signs every mapped document (the same content as mapping cdg/life-certificate-batch
              .to-cdg.xsl gives, which a test checks). The file is kept under
              `<var>/cdg/batches/<reference>.xml` as the evidence of what was sent, and re-used as
              is when an upload is tried again (an ECDSA signature would not come out the same twice);
  * upload    SftpConnector.send_file: 32 KiB writes to `.<name>.part`, then rename; a cut
              connection is retried within the run (UPLOAD_ATTEMPTS), a batch still PREPARED by the
              next run; CDG deduplicates by batch id, so it keeps the batch once;
  * evidence  the hub keeps a message for the batch (sender REGISTRY, the batch's message id) with a
              receipt signed over the file's SHA-256, and a timeline whose events name the file, its
              size and SHA-256 (sealed into the evidence chain with the event); the bytes stay in the
              file rather than in the database, where 35 MB values would be read whole into memory
              (several copies: driver, ORM); the hub's delivery workers never see this message;
  * acknowledgement   CDG's AR_<lot>.xml is read from the SFTP outbox as a stream (the connector's
              `stream_taker`), copied to `<var>/cdg/acknowledgements/` and hashed on the way, parsed
              with iterparse while its XSD and CDG's signature are checked (hub.trust.streaming
              .verify_stream, elements cleared as they go). Each line's verdict is kept compactly
              (case id, result, reason); the signature is at the end of the file, so nothing is
              applied before it verified (memory: about 20 MB per 100,000 verdicts, hence the cap of
              MAX_STREAMED_ITEMS). Then they are applied in one transaction, 1,000 lines at a time:
              the lines with the same verdict are one UPDATE of their cases and one INSERT ... SELECT
              of their history (a row-by-row executemany was 4x slower), the batch ACKNOWLEDGED, and
              the acknowledgement recorded as a hub message answering the batch, with its SHA-256.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from lxml import etree
from sqlalchemy import Text, cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB

from connectors.base import SendResult
from hub.evidence import timeline
from hub.store.db import utcnow
from hub.errors import DeliveryError, SchemaInvalid, UnknownCorrelation
from hub.store.models import Delivery, DeliveryState, Event, Message, MessageState
from hub.trust.receipts import build_receipt
from hub.trust.streaming import CanonicalWriter, escape_text, verify_stream
from registry.models import Case, CaseEvent, Citizen
from registry.services import life_certificates as lc

log = logging.getLogger("registry.life_certificates.stream")

CDG_NS = "urn:ma:cdg:certificats-vie:1"
CDG_XSD = "partners/cdg/certificats-vie.xsd"
MAX_STREAMED_ITEMS = 100_000   # one streamed batch (peak memory grows ~20 MB per 100,000); more make several
CHUNK = 1000                   # rows per bulk statement
_C = f"{{{CDG_NS}}}"
REFERENCE, STATUS, REASON, REASON_TEXT = (f"{_C}{name}"
                                          for name in ("Reference", "Statut", "CodeMotif", "LibelleMotif"))


def is_streamed(batch) -> bool:
    return batch.certificates + batch.death_notices > lc.MAX_ITEMS


def batch_path(hub, reference: str) -> Path:
    return hub.settings.var_dir / "cdg" / "batches" / f"{reference}.xml"


def acknowledgement_path(hub, name: str) -> Path:
    return hub.settings.var_dir / "cdg" / "acknowledgements" / name


# -- prepare ------------------------------------------------------------------------------------------

def prepare(registry, case_ids: list[int]) -> str:
    """Record a batch of these ISSUED cases and move them to BATCHED with set-based statements (one
    transaction): an UPDATE per CHUNK ids (the batch reference added to `details` by the database's
    own JSON functions), their history rows by INSERT ... SELECT, the kinds counted by GROUP BY."""
    cases, events = Case.__table__, CaseEvent.__table__
    with registry.hub.sessions.begin() as session:
        batch = lc.PensionBatch(reference=f"PENDING-{os.urandom(8).hex()}", message_id=f"PENDING-{os.urandom(8).hex()}",
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
        batch.certificates, batch.death_notices = kinds.get(lc.CERTIFICATE, 0), kinds.get(lc.DEATH_NOTICE, 0)
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
    """The signed LotCertificatsVie of a recorded batch, written to its evidence file (kept when it is
    already there); returns (path, size, sha256)."""
    hub = registry.hub
    path = batch_path(hub, reference)
    if path.exists():
        return path, path.stat().st_size, _file_digest(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with hub.sessions() as session:
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).one()
        session.expunge(batch)
    query = (select(Case.reference, Case.post_code, Case.details, Citizen.given_name_latin, Citizen.family_name_latin,
                    Citizen.birth_date, Citizen.cnie)
             .outerjoin(Citizen, Citizen.id == Case.citizen_id)
             .where(Case.request_message_id == batch.message_id).order_by(Case.id)
             .execution_options(yield_per=2000))
    temporary = path.with_name(f".{path.name}.part")
    counts = {lc.CERTIFICATE: 0, lc.DEATH_NOTICE: 0}
    with open(temporary, "wb") as out, tempfile.SpooledTemporaryFile(1024 * 1024, dir=path.parent) as notices:
        writer = CanonicalWriter(out, "LotCertificatsVie", CDG_NS)
        writer.leaf("IdentifiantMessage", batch.message_id)
        writer.leaf("IdentifiantLot", batch.reference)
        writer.leaf("DateCreation", batch.created_at.isoformat(timespec="seconds"))
        writer.leaf("NombreCertificats", str(batch.certificates))
        writer.leaf("NombreAvisDeces", str(batch.death_notices))
        writer.start("Certificats")
        spooled = []
        with hub.sessions() as session:
            for case_ref, post, details, given, family, birth_date, cnie in session.execute(query):
                kind = details.get("kind")
                counts[kind] = counts.get(kind, 0) + 1
                if kind == lc.DEATH_NOTICE:
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
        if (counts[lc.CERTIFICATE], counts[lc.DEATH_NOTICE]) != (batch.certificates, batch.death_notices):
            raise RuntimeError(f"batch {reference}: {counts} cases found, {batch.certificates} certificates and "
                               f"{batch.death_notices} death notices recorded")
        size, digest = writer.finish(hub.signer)
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


# -- upload, with the hub's evidence ----------------------------------------------------------------

def _batch_message(session, batch, size: int, digest: str, path: Path, hub) -> Message:
    """The hub's record of a streamed batch (created once): a message with a receipt over the file's
    SHA-256. Its delivery to CDG is recorded once the upload succeeded or failed for good: the hub's
    delivery workers never see it (they would map a canonical form this message does not have)."""
    message = session.scalars(select(Message).where(Message.sender == "REGISTRY",
                                                    Message.message_id == batch.message_id)).first()
    if message is not None:
        return message
    now = utcnow()
    receipt = build_receipt(hub.signer, message_id=batch.message_id, sender="REGISTRY", digest=digest, received_at=now)
    message = Message(message_id=batch.message_id, sender="REGISTRY", recipient=lc.PARTNER, type=lc.BATCH_TYPE,
                      correlation_id=batch.reference, state=MessageState.ACCEPTED, digest=digest, received_bytes=None,
                      canonical_bytes=None, receipt=receipt, received_at=now, updated_at=now)
    session.add(message)
    session.flush()
    timeline.record(session, message, timeline.RECEIVED,
                    f"streamed batch of {batch.certificates} certificates and {batch.death_notices} death notices, "
                    f"written in CDG's format and signed by the hub: {size} bytes, sha256 {digest}, kept as {path}")
    timeline.record(session, message, timeline.ACCEPTED, f"sha256 {digest[:16]}…, receipt signed")
    timeline.record(session, message, timeline.QUEUED, f"for {lc.PARTNER} (uploaded by the registry as a stream)")
    return message


def upload(registry, reference: str, path: Path, size: int, digest: str) -> SendResult | DeliveryError:
    """Upload the batch file; the batch -> SUBMITTED. A failure is returned, recorded on the batch
    message's timeline: transient, the batch stays PREPARED; permanent, it fails with its cases."""
    hub = registry.hub
    with hub.sessions.begin() as session:
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).one()
        message = _batch_message(session, batch, size, digest, path, hub)
        message_pk, message_id = message.id, batch.message_id
        attempt = 1 + session.scalar(select(func.count()).select_from(Event).where(
            Event.message_pk == message.id, Event.kind == timeline.RETRY_SCHEDULED))
    try:
        result = hub.connectors[lc.PARTNER].send_file(message_id, lc.BATCH_TYPE, path, sha256=digest)
    except DeliveryError as error:
        with hub.sessions.begin() as session:
            message = session.get(Message, message_pk)
            if error.retryable:
                timeline.record(session, message, timeline.RETRY_SCHEDULED, f"uploading to {lc.PARTNER}: "
                                f"{error.reason} (attempt {attempt}; tried again shortly, then by the next run)")
            else:
                delivery = _delivery(session, message, DeliveryState.DEAD, attempt, error.reason)
                message.state = MessageState.DEAD
                timeline.record(session, message, timeline.DEAD_LETTERED, error.reason, delivery)
                lc.fail_batch(session, message_id=message_id, reason=error.reason)
        log.warning("batch %s not uploaded: %s", reference, error.reason)
        return error
    with hub.sessions.begin() as session:
        message = session.get(Message, message_pk)
        delivery = _delivery(session, message, DeliveryState.DELIVERED, attempt, None)
        timeline.record(session, message, timeline.SENT, f"to {lc.PARTNER} over SFTP: {result.detail} "
                                                         f"(attempt {attempt})", delivery)
        message.state, message.updated_at = MessageState.DELIVERED, delivery.delivered_at
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).one()
        if batch.status == "PREPARED":
            batch.status, batch.submitted_at = "SUBMITTED", delivery.delivered_at
            batch.detail = f"uploaded to {lc.PARTNER} as a stream: {size} bytes, sha256 {digest}"
    return result


def _delivery(session, message: Message, state: str, attempts: int, error: str | None) -> Delivery:
    now = utcnow()
    delivery = Delivery(message_pk=message.id, partner=lc.PARTNER, mapping=None, schema_name=CDG_XSD, operation=None,
                        state=state, attempts=attempts, next_attempt_at=now, last_error=error,
                        delivered_at=now if state == DeliveryState.DELIVERED else None)
    session.add(delivery)
    session.flush()
    return delivery


UPLOAD_ATTEMPTS = 4  # within one run, 1 s, 2 s, 4 s apart; a batch still PREPARED is tried by the next run


def submit(registry, reference: str) -> bool:
    """Write (or re-use) the batch file and upload it; True once CDG's server holds it."""
    path, size, digest = write_batch(registry, reference)
    for attempt in range(UPLOAD_ATTEMPTS):
        result = upload(registry, reference, path, size, digest)
        if isinstance(result, SendResult):
            log.info("batch %s uploaded as a stream (%d bytes)", reference, size)
            return True
        if not result.retryable:
            return False
        if attempt + 1 < UPLOAD_ATTEMPTS:
            time.sleep(2 ** attempt)
    return False


# -- CDG's acknowledgement ------------------------------------------------------------------------------

class _Tee:
    """A file-like reader that copies what is read to `out` and hashes it."""

    def __init__(self, source: BinaryIO, out: BinaryIO):
        self.source, self.out, self.digest, self.size = source, out, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n if n and n > 0 else 1024 * 1024)
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)
        return data


def acknowledged_batch(registry, name: str, size: int) -> str | None:
    """The reference of the streamed batch an outbox file `AR_<reference>.xml` acknowledges, or None."""
    if not (name.startswith("AR_") and name.endswith(".xml")):
        return None
    reference = name[3:-4]
    with registry.hub.sessions() as session:
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).first()
        return reference if batch is not None and is_streamed(batch) else None


def stream_taker(registry):
    """For SftpConnector.stream_taker: acknowledgements of streamed batches are read as streams."""
    def taker(name: str, size: int):
        reference = acknowledged_batch(registry, name, size)
        if reference is None:
            return None
        return lambda remote: take_acknowledgement(registry, reference, name, remote)
    return taker


def take_acknowledgement(registry, reference: str, name: str, source: BinaryIO) -> dict:
    """Read CDG's acknowledgement of a streamed batch from `source` and apply it; returns what was done,
    with the seconds spent reading (download, parse, verify) and applying. Raises InputError (the
    file is refused) when it is not valid, not signed by CDG, or answers another batch."""
    hub = registry.hub
    with hub.sessions() as session:
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).one()
        if batch.status == "ACKNOWLEDGED":
            return {"already": True}
        message_id = batch.message_id
        members = dict(session.execute(select(Case.reference, Case.id).where(
            Case.request_message_id == message_id, Case.status == "BATCHED")).all())
    path = acknowledgement_path(hub, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    header: dict[str, str] = {}
    verdicts: list[tuple[int, str, str | None, str | None]] = []
    unknown: list[str] = []
    results = {"ACCEPTED": 0, "REJECTED": 0}
    statuses = {"ACCEPTE": "ACCEPTED", "REJETE": "REJECTED"}

    def on_element(element: etree._Element) -> None:
        local = element.tag[len(_C):]
        if local == "Ligne":
            fields = {child.tag: child.text for child in element}  # one pass (findtext costs 4x more)
            case_reference = (fields.get(REFERENCE) or "").strip()
            status = (fields.get(STATUS) or "").strip()
            result = statuses.get(status)
            if result is None:  # the XSD says so too, but its error may come after this line was read
                raise SchemaInvalid(f"{name}: line {case_reference!r} has Statut {status!r}, not ACCEPTE or REJETE")
            case_id = members.pop(case_reference, None)
            if case_id is None:
                unknown.append(case_reference)
                return
            results[result] += 1
            reason = fields.get(REASON)
            verdicts.append((case_id, result, reason.strip() if reason else None, fields.get(REASON_TEXT)))
        else:
            header[local] = (element.text or "").strip()
            if local == "IdentifiantLot" and header[local] != reference:
                raise UnknownCorrelation(f"{name} acknowledges batch {header[local]!r}, not {reference}")
            if local == "ReferenceMessage" and header[local] != message_id:
                raise UnknownCorrelation(f"{name} answers message {header[local]!r}, not {message_id}")

    started = time.perf_counter()
    try:
        with open(temporary, "wb") as out:
            tee = _Tee(source, out)
            verify_stream(tee, certificates=hub.trust.certificates.get(lc.PARTNER, []), signer_name=lc.PARTNER,
                          what=f"{lc.PARTNER} AccuseLot {name}",
                          roots={f"{_C}AccuseLot"}, schema=_schema(hub), apex_depth=1, on_element=on_element)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    read_seconds = time.perf_counter() - started
    digest, size = tee.digest.hexdigest(), tee.size
    started = time.perf_counter()
    detail = _apply(registry, reference, header, verdicts, results, members, unknown, path, size, digest)
    apply_seconds = time.perf_counter() - started
    log.info(detail)
    return {"lines": len(verdicts) + len(unknown), **results, "unknown": len(unknown), "left": len(members),
            "bytes": size, "sha256": digest, "path": str(path), "read_seconds": read_seconds,
            "apply_seconds": apply_seconds, "detail": detail}


def _schema(hub) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(hub.settings.schemas_dir / CDG_XSD)))


def _apply(registry, reference, header, verdicts, results, left, unknown, path, size, digest) -> str:
    """The verified verdicts, in one transaction, CHUNK lines at a time: within a chunk the lines with
    the same verdict (result, reason) are one UPDATE of their cases and one INSERT ... SELECT of their
    history rows; then the batch ACKNOWLEDGED and the acknowledgement recorded by the hub as a message
    answering the batch."""
    hub = registry.hub
    partner_reference = header["IdentifiantAccuse"]
    cases, events = Case.__table__, CaseEvent.__table__
    now = utcnow()
    with hub.sessions.begin() as session:
        batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)
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
                session.execute(update(cases).where(cases.c.id.in_(ids), cases.c.status == "BATCHED").values(
                    status=result, updated_at=now, partner_reference=partner_reference,
                    outcome=literal(outcome, cases.c.outcome.type)))
                session.execute(insert(events).from_select(
                    ["case_id", "at", "status", "actor", "note"],
                    select(cases.c.id, literal(now, events.c.at.type), literal(result), literal(lc.PARTNER),
                           literal(note)).where(cases.c.id.in_(ids))))
        batch.status, batch.acknowledged_at = "ACKNOWLEDGED", now
        batch.accepted, batch.rejected = results["ACCEPTED"], results["REJECTED"]
        batch.partner_reference = partner_reference
        batch.detail = (f"{len(verdicts)} cases moved" + (f"; {len(left)} not in the acknowledgement" if left else "")
                        + (f"; unknown references {', '.join(unknown[:10])}" if unknown else "")
                        + f"; acknowledgement kept as {path} ({size} bytes, sha256 {digest})")
        _record_acknowledgement(session, hub, batch, header, path, size, digest, results)
        return (f"batch {reference} acknowledged by CDG (streamed): {results['ACCEPTED']} accepted, "
                f"{results['REJECTED']} rejected ({batch.detail})")


def _record_acknowledgement(session, hub, batch, header, path, size, digest, results) -> None:
    """CDG's acknowledgement as a hub message (sender CDG, answering the batch), delivered to the registry."""
    message_id = header["IdentifiantAccuse"]
    if session.scalars(select(Message.id).where(Message.sender == lc.PARTNER,
                                                Message.message_id == message_id)).first():
        return
    now = utcnow()
    receipt = build_receipt(hub.signer, message_id=message_id, sender=lc.PARTNER, digest=digest, received_at=now)
    message = Message(message_id=message_id, sender=lc.PARTNER, recipient="REGISTRY", type=lc.ACK_TYPE,
                      correlation_id=batch.reference, in_reply_to=batch.message_id, state=MessageState.DELIVERED,
                      digest=digest, received_bytes=None, canonical_bytes=None, receipt=receipt, received_at=now,
                      updated_at=now)
    session.add(message)
    session.flush()
    timeline.record(session, message, timeline.RECEIVED, f"{size} bytes from {lc.PARTNER} over SFTP, read as a "
                                                         f"stream: sha256 {digest}, kept as {path}")
    timeline.record(session, message, timeline.VALIDATED, f"against {CDG_XSD}, while reading")
    timeline.record(session, message, timeline.VERIFIED, f"signed by {lc.PARTNER} (verified while reading)")
    timeline.record(session, message, timeline.CORRELATED, f"answers {batch.message_id} in case {batch.reference}")
    timeline.record(session, message, timeline.ACCEPTED, f"sha256 {digest[:16]}…, receipt signed")
    delivery = Delivery(message_pk=message.id, partner="REGISTRY", mapping=None, schema_name=None, operation=None,
                        state=DeliveryState.DELIVERED, attempts=1, next_attempt_at=now, delivered_at=now)
    session.add(delivery)
    session.flush()
    timeline.record(session, message, timeline.SENT, f"applied by the registry: {results['ACCEPTED']} accepted, "
                                                     f"{results['REJECTED']} rejected", delivery)
    original = session.scalars(select(Message).where(Message.sender == "REGISTRY",
                                                     Message.message_id == batch.message_id)).first()
    if original is not None:
        timeline.record(session, original, timeline.ANSWERED, f"{lc.PARTNER} answered with {message_id}")


def attach(registry) -> None:
    """Route CDG's acknowledgements of streamed batches to `take_acknowledgement` (at registry start)."""
    connector = registry.hub.connectors.get(lc.PARTNER)
    if connector is not None and hasattr(connector, "stream_taker"):
        connector.stream_taker = stream_taker(registry)

"""Life certificates (service 8): posts issue life certificates for pensioners abroad; the registry
sends them to the pension funds managed by CDG (CNRA, RCAR) in signed batches, with the death
notices of pensioners (from repatriation cases), and applies CDG's acknowledgement line by line.

    life certificate or death notice:  ISSUED -> BATCHED -> ACCEPTED | REJECTED   (or FAILED)

  * POST /api/v1/cases/life-certificate: the post issues a certificate for a registered citizen
    (pension number, fund): a case ISSUED at once (details.kind = LIFE_CERTIFICATE).
  * `record_death_notice(...)` (called by the repatriation service): a case ISSUED with
    details.kind = DEATH_NOTICE, for the next batch.
  * `build_and_submit_batch(registry)` (scheduled, and POST /api/v1/life-certificates/batches):
    the ISSUED cases go into a LifeCertificateBatch, the cases -> BATCHED, the batch recorded in
    `pension_batches` (PREPARED), then sent (SUBMITTED once the hub accepted it). Up to MAX_ITEMS
    cases, the signed batch is one canonical message submitted through the hub, which maps and uploads
    it. More than that (up to cdg_stream.MAX_STREAMED_ITEMS, 100,000, per batch) would break the hub's
    message caps and hold hundreds of megabytes of trees: such a batch is written as a file in CDG's
    format and submitted to the hub as a file, which keeps it as one (registry/services/cdg_stream.py).
    Either way its bytes are a function of what was recorded (or kept on disk), so a batch left
    PREPARED by a crash is sent again, identically, by the next run, and the hub (or CDG) recognises
    it as the same batch.
  * CDG's acknowledgement (LifeCertificateBatchAcknowledgement, InReplyTo = the batch message id):
    each line moves its case to ACCEPTED or REJECTED (with CDG's reason code, e.g.
    PENSION_INCONNUE); the batch becomes ACKNOWLEDGED and keeps CDG's signed AccuseLot.
  * A batch the hub could not deliver (dead letter): the batch and its cases -> FAILED. Resent (the console's
    dead letters, POST /api/v1/messages/{id}/resend): the batch SUBMITTED and its cases BATCHED again, and
    CDG's acknowledgement of it is applied as on the first try.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from lxml import etree
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.store.db import utcnow
from hub.errors import InputError, NotFound, TryLater
from hub.xml.safe import to_bytes
from hub.xml.envelope import Header
from registry import audit, canonical, service
from registry.inputs import StrictIn, Text
from registry.models import Case, PensionBatch
from registry.services import cdg_stream
from registry.services.cdg_stream import ACK_TYPE, BATCH_TYPE, CERTIFICATE, DEATH_NOTICE, PARTNER  # noqa: F401
from registry.outputs import case_out

log = logging.getLogger("registry.life_certificates")

SERVICE = "LIFE_CERTIFICATE"
PREFIX = "CDV"
MACHINE = {
    "SUBMITTED": {"ISSUED"},
    "ISSUED": {"BATCHED"},
    "BATCHED": {"ACCEPTED", "REJECTED"},
    "ACCEPTED": set(), "REJECTED": set(),
    "FAILED": {"ACCEPTED", "REJECTED"},  # CDG's acknowledgement of a resent batch
}
RESUME_STATUS = "BATCHED"  # a resent batch's cases wait for CDG's acknowledgement again
# cancelled only before it leaves in a batch (issued by mistake), or once its batch failed: a batch CDG holds
# is CDG's to answer
CANCELLABLE = {"SUBMITTED", "ISSUED", "FAILED"}
NS = "urn:ma:gov:consular:pension:1"
# Deadlines (registry/deadlines.py): the case waits for CDG in AWAITING; the daily batch, then CDG's
# acknowledgement file.
AWAITING = {"SUBMITTED", "ISSUED", "BATCHED"}
PARTNERS = ("CDG",)
ANSWER_WITHIN = "3d"  # default of config/services.yaml
MAX_ITEMS = 1000          # keeps one batch well under the hub's 1 MiB message cap
BATCH_SCHEDULE = {"hour": 2, "minute": 0, "timezone": "Africa/Casablanca"}  # daily, cron fields
P = canonical.maker(NS, "pen")
_building = threading.Lock()  # one batch builder at a time in this process


# -- issuing -----------------------------------------------------------------------------------------


def issue_certificate(session: Session, *, registration_id: str, pension_number: str, fund: str,
                      issue_date: dt.date, actor: str) -> Case:
    """A life certificate issued by the citizen's post: a case ISSUED, waiting for the next batch."""
    citizen = service.get_citizen(session, registration_id=registration_id)
    if citizen.status != "ACTIVE":
        raise InputError(f"citizen {registration_id} is {citizen.status}, not ACTIVE: no life certificate")
    details = {"kind": CERTIFICATE, "pension_number": pension_number, "fund": fund,
               "issue_date": issue_date.isoformat()}
    return service.open_case(session, service=SERVICE, citizen=citizen, details=details, actor=actor,
                             status="ISSUED", note=f"life certificate issued ({fund} {pension_number})")


def record_death_notice(session: Session, *, repatriation_case: Case, pension_number: str, fund: str,
                        date_of_death: dt.date | str) -> Case:
    """Queue a death notice for the next CDG batch (pension stop); once per repatriation case.

    The deceased's Latin name comes from the repatriation case's citizen, or else from its
    details["deceased"] ({"given_name_latin", "family_name_latin"} or {"latin_name": {"given", "family"}})."""
    query = select(Case).where(Case.service == SERVICE, Case.post_code == repatriation_case.post_code,
                               Case.citizen_id == repatriation_case.citizen_id if repatriation_case.citizen_id
                               else Case.citizen_id.is_(None))
    for case in session.scalars(query):
        if case.details.get("repatriation_case") == repatriation_case.reference:
            return case
    given, family = _deceased_name(repatriation_case)
    date_of_death = date_of_death.isoformat() if isinstance(date_of_death, dt.date) else str(date_of_death)
    details = {"kind": DEATH_NOTICE, "pension_number": pension_number, "fund": fund, "date_of_death": date_of_death,
               "repatriation_case": repatriation_case.reference, "deceased": {"given": given, "family": family}}
    return service.open_case(session, service=SERVICE, citizen=repatriation_case.citizen, details=details,
                             actor="registry", post_code=repatriation_case.post_code, status="ISSUED",
                             note=f"death notice for {fund} {pension_number} (repatriation {repatriation_case.reference})")


def _deceased_name(case: Case) -> tuple[str, str]:
    if case.citizen is not None:
        return case.citizen.given_name_latin, case.citizen.family_name_latin
    deceased = (case.details or {}).get("deceased") or {}
    latin = deceased.get("latin_name") or {}
    given = deceased.get("given_name_latin") or latin.get("given")
    family = deceased.get("family_name_latin") or latin.get("family")
    if not (given and family):
        raise InputError(f"repatriation case {case.reference} names no deceased: no death notice possible")
    return given, family


# -- batches -----------------------------------------------------------------------------------------


def build_and_submit_batch(registry) -> str | None:
    """Send every ISSUED certificate and death notice to CDG; returns the first new batch's reference,
    or None when there was nothing to send. Batches a crash left PREPARED are submitted first."""
    with _building:
        with registry.hub.sessions() as session:
            leftovers = list(session.scalars(select(PensionBatch.reference).where(PensionBatch.status == "PREPARED")
                                             .order_by(PensionBatch.id)))
        for reference in leftovers:
            try:
                _submit(registry, reference)
            except Exception:  # a leftover that keeps failing must not stop new batches
                log.exception("batch %s could not be submitted; the next run tries again", reference)
        first = None
        while (reference := _prepare(registry)) is not None:
            _submit(registry, reference)
            first = first or reference
        return first


def is_streamed(batch: PensionBatch) -> bool:
    """More than MAX_ITEMS cases: written, submitted and acknowledged as files (registry/services/cdg_stream.py)."""
    return batch.certificates + batch.death_notices > MAX_ITEMS


def _prepare(registry) -> str | None:
    """Record a batch of ISSUED cases and move them to BATCHED, in one transaction: up to MAX_ITEMS as
    one hub message, more as one streamed batch."""
    with registry.hub.sessions() as session:
        ids = list(session.scalars(select(Case.id).where(Case.service == SERVICE, Case.status == "ISSUED")
                                   .order_by(Case.id).limit(cdg_stream.MAX_STREAMED_ITEMS)))
    if len(ids) > MAX_ITEMS:
        return cdg_stream.prepare(registry, ids)
    with registry.hub.sessions.begin() as session:
        cases = list(session.scalars(select(Case).where(Case.service == SERVICE, Case.status == "ISSUED")
                                     .order_by(Case.id).limit(MAX_ITEMS).with_for_update(skip_locked=True)))
        if not cases:
            return None
        kinds = [case.details.get("kind") for case in cases]
        batch = PensionBatch(reference=f"PENDING-{uuid.uuid4().hex}", message_id=f"PENDING-{uuid.uuid4().hex}",
                             status="PREPARED", certificates=kinds.count(CERTIFICATE),
                             death_notices=kinds.count(DEATH_NOTICE), created_at=utcnow().replace(microsecond=0))
        session.add(batch)
        session.flush()
        batch.reference = f"LCB-{batch.created_at:%Y}-{batch.id:06d}"
        batch.message_id = f"REGISTRY-{batch.reference}"
        for case in cases:
            case.request_message_id = batch.message_id
            case.details = {**case.details, "batch": batch.reference}
            service.move_case(session, case=case, status="BATCHED", actor="registry", note=f"in batch {batch.reference}")
        return batch.reference


def _submit(registry, reference: str) -> None:
    with registry.hub.sessions() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)).one()
        session.expunge(batch)
        streamed = is_streamed(batch)
        if not streamed:
            cases = list(session.scalars(select(Case).where(Case.request_message_id == batch.message_id)
                                         .order_by(Case.id)))
            data = batch_message(registry, batch, cases)
    try:
        receipt = cdg_stream.submit(registry, batch) if streamed else registry.submit(data)
    except InputError as exc:  # our own batch refused: a defect to see, not to retry
        _fail(registry, batch.message_id, f"refused by the hub: {exc.detail}")
        return
    except TryLater as exc:  # CDG's outbox is full: the batch stays PREPARED, the next run submits it
        log.warning("batch %s stays PREPARED for now: %s", reference, exc)
        return
    with registry.hub.sessions.begin() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)).one()
        if batch.status == "PREPARED":
            batch.status, batch.submitted_at = "SUBMITTED", utcnow()
            batch.detail = f"accepted by the hub as {receipt.message_id}" + (
                f" ({cdg_stream.describe(registry, batch)})" if streamed else "")
    log.info("batch %s submitted (%d certificates, %d death notices)", reference, batch.certificates,
             batch.death_notices)


def batch_message(registry, batch: PensionBatch, cases: list[Case]) -> bytes:
    """The signed canonical LifeCertificateBatch: a function of what was recorded (same bytes each time)."""
    created = batch.created_at.isoformat(timespec="seconds")
    items = [_certificate(case) for case in cases if case.details.get("kind") == CERTIFICATE]
    items += [_death_notice(case) for case in cases if case.details.get("kind") == DEATH_NOTICE]
    document = P.LifeCertificateBatch(P.BatchReference(batch.reference), P.CreatedAt(created), *items)
    return canonical.envelope(message_id=batch.message_id, correlation_id=batch.reference, document=document,
                              recipient=PARTNER, signer=registry.signer, created=batch.created_at)


def _certificate(case: Case) -> etree._Element:
    citizen, details = case.citizen, case.details
    pensioner = [P.RegistrationId(citizen.registration_id),
                 P.LatinName(P.Given(citizen.given_name_latin), P.Family(citizen.family_name_latin)),
                 P.ArabicName(P.Given(citizen.given_name_arabic), P.Family(citizen.family_name_arabic)),
                 P.BirthDate(citizen.birth_date.isoformat())]
    if citizen.cnie:
        pensioner.append(P.Cnie(citizen.cnie))
    return P.Certificate(P.CaseReference(case.reference), P.Post(case.post_code), P.Pensioner(*pensioner),
                         P.PensionNumber(details["pension_number"]), P.Fund(details["fund"]),
                         P.IssueDate(details["issue_date"]))


def _death_notice(case: Case) -> etree._Element:
    details = case.details
    notice = [P.CaseReference(case.reference)]
    if details.get("repatriation_case"):
        notice.append(P.RepatriationCase(details["repatriation_case"]))
    notice += [P.PensionNumber(details["pension_number"]), P.Fund(details["fund"]),
               P.Deceased(P.Given(details["deceased"]["given"]), P.Family(details["deceased"]["family"])),
               P.DateOfDeath(details["date_of_death"])]
    return P.DeathNotice(*notice)


def _fail(registry, message_id: str, reason: str) -> bool:
    with registry.hub.sessions.begin() as session:
        return fail_batch(session, message_id=message_id, reason=reason)


def fail_batch(session: Session, *, message_id: str, reason: str) -> bool:
    """The batch sent as `message_id` (the registry's own message) and its cases still BATCHED -> FAILED;
    False when it is no batch. A batch already final (ACKNOWLEDGED, FAILED) is left as it is."""
    batch = session.scalars(select(PensionBatch).where(PensionBatch.message_id == message_id)
                            .with_for_update()).first()
    if batch is None:
        return False
    if batch.status in ("ACKNOWLEDGED", "FAILED"):
        log.warning("dead letter %s: batch %s is already %s, left as it is (%s)", message_id, batch.reference,
                    batch.status, reason)
        return True
    batch.status, batch.detail = "FAILED", reason[:2000]
    for case in session.scalars(select(Case).where(Case.request_message_id == message_id, Case.status == "BATCHED")):
        service.move_case(session, case=case, status="FAILED", actor="hub", note=reason)
    log.error("batch %s failed: %s", batch.reference, reason)
    return True


def on_dead_letter(registry, session: Session, correlation_id: str, message_id: str, reason: str) -> bool:
    return fail_batch(session, message_id=message_id, reason=reason)


def resume_batch(session: Session, *, message_id: str, actor: str) -> bool:
    """The batch sent as `message_id`, dead-lettered and now resent by `actor`: SUBMITTED again, its FAILED cases
    BATCHED again, so that CDG's acknowledgement of the resent batch is applied as on the first try; False when
    it is no batch. A batch not FAILED (acknowledged already) is left as it is."""
    batch = session.scalars(select(PensionBatch).where(PensionBatch.message_id == message_id)
                            .with_for_update()).first()
    if batch is None:
        return False
    if batch.status != "FAILED":
        return True
    batch.status, batch.detail = "SUBMITTED", f"resent by {actor}"[:2000]
    for case in session.scalars(select(Case).where(Case.request_message_id == message_id, Case.status == "FAILED")):
        service.move_case(session, case=case, status=RESUME_STATUS, actor="hub", action=True,
                          note=f"batch {batch.reference} resent: waiting for CDG's acknowledgement again")
    log.info("batch %s resent by %s", batch.reference, actor)
    return True


def on_resend(registry, session: Session, correlation_id: str, message_id: str, actor: str) -> bool:
    return resume_batch(session, message_id=message_id, actor=actor)


# -- CDG's acknowledgement ------------------------------------------------------------------------------


def apply_acknowledgement(registry, session: Session, header: Header, document: etree._Element) -> str:
    """Each line of CDG's acknowledgement moves its case to ACCEPTED or REJECTED; returns what happened."""
    batch = session.scalars(select(PensionBatch).where(PensionBatch.message_id == header.in_reply_to)
                            .with_for_update()).first()
    if batch is None:
        raise NotFound(f"acknowledgement {header.message_id} answers {header.in_reply_to!r}, which is no batch")
    holder = document.find(f"{{{NS}}}PartnerAcknowledgement")
    canonical.verify_partner_artefact(registry, holder[0], PARTNER)  # CDG's own seal: kept as it arrived
    partner_reference = canonical.text(document, "PartnerReference", NS)
    members = {case.reference: case for case in session.scalars(
        select(Case).where(Case.request_message_id == batch.message_id).with_for_update())}
    moved, unknown, results = 0, [], {"ACCEPTED": 0, "REJECTED": 0}
    for item in document.iterfind(f"{{{NS}}}Item"):
        reference, result = canonical.text(item, "CaseReference", NS), canonical.text(item, "Result", NS)
        case = members.get(reference)
        if case is None:
            unknown.append(reference)
            continue
        results[result] += 1
        reason, reason_text = canonical.text(item, "Reason", NS), canonical.text(item, "ReasonText", NS)
        note = f"{result.lower()} by CDG in {partner_reference}" + (f": {reason}" if reason else "")
        if service.move_case(session, case=case, status=result, actor=PARTNER, note=note):
            case.outcome = {"result": result, "reason": reason, "reason_text": reason_text, "batch": batch.reference,
                            "acknowledgement": partner_reference}
            case.partner_reference = partner_reference
            moved += 1
    batch.status, batch.acknowledged_at = "ACKNOWLEDGED", utcnow()
    batch.accepted, batch.rejected = results["ACCEPTED"], results["REJECTED"]
    batch.partner_reference, batch.acknowledgement = partner_reference, to_bytes(holder[0])
    left = sum(1 for case in members.values() if case.status == "BATCHED")
    batch.detail = f"{moved} cases moved" + (f"; {left} not in the acknowledgement" if left else "") + \
        (f"; unknown references {', '.join(unknown[:10])}" if unknown else "")
    return f"batch {batch.reference} acknowledged by CDG: {results['ACCEPTED']} accepted, " \
           f"{results['REJECTED']} rejected ({batch.detail})"


def attach(registry) -> None:
    """At registry start: CDG's acknowledgements too large to hold are handed over as files, applied as streams."""
    cdg_stream.attach(registry)


HANDLERS = {ACK_TYPE: apply_acknowledgement}
SCHEDULED = [("life-certificate-batch", build_and_submit_batch, BATCH_SCHEDULE)]


# -- HTTP -------------------------------------------------------------------------------------------


class LifeCertificateIn(StrictIn):
    registration_id: Text = Field(pattern=r"^MRE-[0-9]{7,10}$", description="The pensioner, registered at the post.")
    pension_number: Text = Field(pattern=r"^[0-9]{6,12}$", examples=["20230417"], description="The fund's pension number.")
    fund: Literal["CNRA", "RCAR"] = Field(description="The pension fund managed by CDG.")
    issue_date: dt.date | None = Field(None, description="Day the pensioner appeared at the post (default: today).")


def batch_out(batch: PensionBatch) -> dict:
    return {"reference": batch.reference, "message_id": batch.message_id, "status": batch.status,
            "certificates": batch.certificates, "death_notices": batch.death_notices, "accepted": batch.accepted,
            "rejected": batch.rejected, "partner_reference": batch.partner_reference, "detail": batch.detail,
            "created_at": batch.created_at.isoformat(),
            "submitted_at": batch.submitted_at.isoformat() if batch.submitted_at else None,
            "acknowledged_at": batch.acknowledged_at.isoformat() if batch.acknowledged_at else None}


router = APIRouter(prefix="/api/v1", tags=["life certificates"])


@router.post("/cases/life-certificate", status_code=201, summary="Issue a life certificate for a pensioner")
async def open_life_certificate(body: LifeCertificateIn, request: Request,
                                identity: Identity = Depends(allowed("registry:act"))):
    hub = request.app.state.registry.hub

    def work() -> dict:
        with hub.sessions.begin() as session:
            citizen = service.get_citizen(session, registration_id=body.registration_id)
            identity.check_post(citizen.post_code, doing=f"issuing a life certificate for {body.registration_id}")
            case = issue_certificate(session, registration_id=body.registration_id, pension_number=body.pension_number,
                                     fund=body.fund, issue_date=body.issue_date or utcnow().date(),
                                     actor=identity.case_actor)
            session.flush()
            audit.record(hub, session, identity, audit.CASE_OPENED, case.reference, f"{SERVICE} at {case.post_code}")
            return case_out(case, full=True, viewer=identity)
    return await run_in_threadpool(work)


@router.post("/life-certificates/batches", summary="Send the pending certificates and death notices to CDG now")
async def send_batch_now(request: Request, _identity: Identity = Depends(allowed("operations:run"))):
    reference = await run_in_threadpool(build_and_submit_batch, request.app.state.registry)
    if reference is None:
        return {"batch": None, "detail": "nothing to send: no certificate or death notice is ISSUED"}
    return {"batch": reference}


@router.get("/life-certificates/batches", summary="Batches sent to CDG, newest first")
def list_batches(request: Request, status: str | None = Query(None, max_length=40),
                 limit: int = Query(50, ge=1, le=500),
                 _identity: Identity = Depends(allowed("messages:read"))):
    with request.app.state.registry.hub.sessions() as session:
        query = select(PensionBatch).order_by(PensionBatch.id.desc()).limit(limit)
        if status:
            query = query.where(PensionBatch.status == status)
        return {"items": [batch_out(batch) for batch in session.scalars(query)]}


@router.get("/life-certificates/batches/{reference}", summary="One batch, with its cases' statuses")
def get_batch(reference: str, request: Request, _identity: Identity = Depends(allowed("messages:read"))):
    with request.app.state.registry.hub.sessions() as session:
        batch = session.scalars(select(PensionBatch).where(PensionBatch.reference == reference)).first()
        if batch is None:
            raise NotFound(f"no batch with reference {reference!r}")
        cases = session.scalars(select(Case).where(Case.request_message_id == batch.message_id).order_by(Case.id))
        return {**batch_out(batch), "cases": [{"reference": c.reference, "kind": c.details.get("kind"),
                                              "status": c.status} for c in cases]}

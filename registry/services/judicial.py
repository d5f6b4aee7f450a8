"""Judicial documents (service 7), started by the Ministry of Justice.

JUSTICE's DemandeSignification reaches the registry as a JudicialServiceRequest (its MessageId, Justice's
id, becomes the case's request_message_id; its CorrelationId, Justice's reference, the case's
partner_reference). The addressee is looked up by CNIE among the active registered citizens:

    RECEIVED -> AT_POST         found: the case is at the post where the citizen is registered
    RECEIVED -> CERTIFYING      not found: outcome ADDRESSEE_UNKNOWN, the certificate leaves at once
    AT_POST  -> CERTIFYING      the post recorded the outcome (POST /api/v1/cases/{reference}/outcome:
                                SERVED, REFUSED or NOT_FOUND)
    CERTIFYING -> SERVED | REFUSED | NOT_FOUND | ADDRESSEE_UNKNOWN   final, once the hub has accepted the
                                signed JudicialDeliveryCertificate (InReplyTo the request, CorrelationId
                                Justice's reference); the hub then delivers it to JUSTICE
    any non-final -> FAILED     the hub refused the certificate
    ADDRESSEE_UNKNOWN -> AT_POST   an agent matched the addressee to a citizen by hand (registry/case_actions.py);
                                the post's outcome then goes to JUSTICE in a second certificate

REFUSED means legally deemed served on the 10th day after the refusal: DeemedServedOn = date + 10 days.
A certificate the hub could not take (hub down, database busy) stays CERTIFYING and is sent again, with
the same id and bytes, by a scheduled job. A certificate the hub accepted but could not deliver to
JUSTICE (dead letter) leaves the final status as it is and adds a note to the case's history.

The judicial document itself is confidential: it is kept as a case document (kind JUDICIAL_DOCUMENT,
the opaque Document element as delivered) and never copied into details or outcome, never logged.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from lxml import etree
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.api.problems import problem
from hub.store.db import utcnow
from hub.errors import InputError
from hub.xml.safe import to_bytes
from hub.xml.envelope import Header
from registry import audit, canonical, citizens, service
from registry.inputs import StrictIn, Text
from registry.models import Case
from registry.outputs import case_out

log = logging.getLogger("registry.judicial")

SERVICE = "JUDICIAL_DOCUMENT"
PREFIX = "JUD"
OUTCOMES = ("SERVED", "REFUSED", "NOT_FOUND", "ADDRESSEE_UNKNOWN")
MACHINE = {
    "RECEIVED": {"AT_POST", "CERTIFYING"},
    "AT_POST": {"CERTIFYING"},
    "CERTIFYING": set(OUTCOMES),
    **{outcome: set() for outcome in OUTCOMES},
}
# what people do besides (registry/case_actions.py): an addressee nobody was found for, matched to a citizen by hand
ACTIONS = {"ADDRESSEE_UNKNOWN": {"AT_POST"}}
# never cancelled by a post: the document is the court's, and Justice is owed a delivery certificate (a post
# records NOT_FOUND or REFUSED instead)
CANCELLABLE: set[str] = set()
NS = "urn:ma:gov:consular:judicial:1"
REQUEST_TYPE = "JudicialServiceRequest"
CERTIFICATE_TYPE = "JudicialDeliveryCertificate"
DOCUMENT_KIND = "JUDICIAL_DOCUMENT"
DEEMED_SERVED_AFTER = dt.timedelta(days=10)
# Deadlines (registry/deadlines.py): the case waits for JUSTICE in AWAITING; the post serves the document and
# the certificate goes back to JUSTICE.
AWAITING = {"RECEIVED", "AT_POST", "CERTIFYING"}
PARTNERS = ("JUSTICE",)
ANSWER_WITHIN = "30d"  # default of config/services.yaml
JUD = canonical.maker(NS, "jud")


def certificate_message_id(case: Case) -> str:
    # Deterministic: sending the same certificate again is recognised by the hub as the same message; a case
    # matched by hand after ADDRESSEE_UNKNOWN (registry/case_actions.py) sends a second one, REGISTRY-<ref>-CERT-R2.
    return service.request_id(case, "-CERT")


# -- the request from JUSTICE ---------------------------------------------------------------------

def apply_request(registry, session: Session, header: Header, request: etree._Element) -> str:
    """Open the case at the addressee's post, or certify ADDRESSEE_UNKNOWN; returns what happened."""
    existing = session.scalars(select(Case).where(Case.service == SERVICE,
                                                  Case.request_message_id == header.message_id)).first()
    if existing is not None:  # the same delivery again (at-least-once): nothing twice
        return f"request {header.message_id} already opened case {existing.reference}"
    text = lambda path: canonical.text(request, path, NS)  # noqa: E731
    cnie = text("Addressee/Cnie")
    details = {"court": {"code": text("Court/Code"), "name": text("Court/Name")}, "case_number": text("CaseNumber"),
               "document_type": text("DocumentType"), "hearing_date": text("HearingDate"),
               "issued_at": text("IssuedAt"), "addressee": {"cnie": cnie, "name": text("Addressee/Name")}}
    citizen = service.find_citizen_by_cnie(session, cnie=cnie)
    deceased = citizens.deceased_holder(session, cnie) if citizen is None and cnie else None
    if deceased is not None:
        return _addressee_deceased(registry, session, header, details, deceased, request)
    case = service.open_case(session, service=SERVICE, citizen=citizen, details=details, actor="JUSTICE",
                             status="RECEIVED", note=f"request {header.message_id} from JUSTICE")
    case.request_message_id, case.partner_reference = header.message_id, header.correlation_id
    service.attach_document(session, case=case, kind=DOCUMENT_KIND,
                            content=to_bytes(request.find(f"{{{NS}}}Document")), source_message_id=header.message_id)
    if citizen is not None:
        service.move_case(session, case=case, status="AT_POST", actor="registry",
                          note=f"addressee {citizen.registration_id} registered at {citizen.post_code}")
        return f"judicial request {header.message_id} -> case {case.reference} AT_POST at {case.post_code}"
    _record_outcome(session, case, outcome="ADDRESSEE_UNKNOWN", day=utcnow().date(), note=None, actor="registry")
    reference = case.reference
    service.after_commit(session, lambda: _certify_quietly(registry, reference))
    return f"judicial request {header.message_id} -> case {case.reference}: no registered citizen with that CNIE"


def _addressee_deceased(registry, session: Session, header, details: dict, deceased, request) -> str:
    """The addressee is recorded as deceased: the document is not served as if they were alive. The case opens
    at their post (kept with their record) and certifies NOT_FOUND at once, its note telling JUSTICE of the
    death and its date, as the consular register has them."""
    case = service.open_case(session, service=SERVICE, citizen=deceased, details=details, actor="JUSTICE",
                             status="RECEIVED", note=f"request {header.message_id} from JUSTICE")
    case.request_message_id, case.partner_reference = header.message_id, header.correlation_id
    service.attach_document(session, case=case, kind=DOCUMENT_KIND,
                            content=to_bytes(request.find(f"{{{NS}}}Document")), source_message_id=header.message_id)
    died = deceased.died_on.isoformat() if deceased.died_on else "a date not recorded"
    _record_outcome(session, case, outcome="NOT_FOUND", day=utcnow().date(), actor="registry",
                    note=f"addressee deceased on {died} (consular register)")
    reference = case.reference
    service.after_commit(session, lambda: _certify_quietly(registry, reference))
    return f"judicial request {header.message_id} -> case {case.reference}: the addressee is deceased"


# -- the certificate to JUSTICE -------------------------------------------------------------------

def _record_outcome(session: Session, case: Case, *, outcome: str, day: dt.date, note: str | None, actor: str) -> None:
    recorded = {"outcome": outcome, "date": day.isoformat(), "recorded_at": utcnow().isoformat(timespec="seconds")}
    if outcome == "REFUSED":
        recorded["deemed_served_on"] = (day + DEEMED_SERVED_AFTER).isoformat()
    if note:
        recorded["note"] = note
    case.outcome = recorded
    service.move_case(session, case=case, status="CERTIFYING", actor=actor, note=f"outcome {outcome} recorded")


def build_certificate(registry, case: Case) -> bytes:
    """The signed canonical JudicialDeliveryCertificate answering the case's request (same bytes every time)."""
    outcome = case.outcome
    parts = [JUD.JusticeReference(case.partner_reference), JUD.CaseReference(case.reference),
             JUD.Outcome(outcome["outcome"]), JUD.OutcomeDate(outcome["date"])]
    if outcome.get("deemed_served_on"):
        parts.append(JUD.DeemedServedOn(outcome["deemed_served_on"]))
    if case.citizen_id is not None and case.post_code:
        parts.append(JUD.Post(case.post_code))
    if outcome.get("note"):
        parts.append(JUD.Note(outcome["note"]))
    return canonical.envelope(message_id=certificate_message_id(case), correlation_id=case.partner_reference,
                              in_reply_to=case.request_message_id, document=JUD.JudicialDeliveryCertificate(*parts),
                              recipient="JUSTICE", signer=registry.signer,
                              created=dt.datetime.fromisoformat(outcome["recorded_at"]))


def certify(registry, reference: str) -> str:
    """Submit the certificate of a CERTIFYING case; final once the hub accepted it. Returns the case's status.

    Errors other than a refusal (the hub cannot take it now) propagate; the case stays CERTIFYING."""
    with registry.hub.sessions() as session:
        case = service.get_case(session, reference=reference)
        if case.status != "CERTIFYING":
            return case.status
        try:
            data = build_certificate(registry, case)
        except service.UNBUILDABLE as exc:
            data, failure = None, f"the certificate could not be built: {exc}"
    if data is None:
        return registry.fail_case(reference, failure)
    try:
        receipt = registry.submit(data)
    except InputError as exc:  # our own certificate refused: a defect to see, not to retry
        return registry.fail_case(reference, f"refused: {exc.detail}")
    with registry.hub.sessions.begin() as session:
        case = service.get_case(session, reference=reference, for_update=True)
        if case.status == "CERTIFYING":
            service.move_case(session, case=case, status=case.outcome["outcome"], actor="hub",
                              note=f"certificate {receipt.message_id} accepted by the hub for JUSTICE")
        return case.status


def _certify_quietly(registry, reference: str) -> None:
    try:
        certify(registry, reference)
    except Exception:  # the scheduled job sends it again
        log.exception("certificate of %s not sent yet", reference)


def certify_pending(registry) -> int:
    """Scheduled: send again the certificates the hub could not take at the time."""
    with registry.hub.sessions() as session:
        references = list(session.scalars(select(Case.reference).where(Case.service == SERVICE,
                                                                       Case.status == "CERTIFYING")))
    for reference in references:
        _certify_quietly(registry, reference)
    return len(references)


def on_dead_letter(registry, session: Session, correlation_id: str, message_id: str, reason: str) -> bool:
    """A certificate the hub accepted but could not deliver to JUSTICE: noted on the case (its status stays)."""
    case = _certified_case(session, message_id)
    if case is None:
        return False
    service.note_case(session, case=case, actor="hub",
                      note=f"certificate {message_id} not delivered to JUSTICE: {reason}")
    return True


def on_resend(registry, session: Session, correlation_id: str, message_id: str, actor: str) -> bool:
    """A certificate dead-lettered and resent: noted on the case (its status, final, stays)."""
    case = _certified_case(session, message_id)
    if case is None:
        return False
    service.note_case(session, case=case, actor="hub", note=f"certificate {message_id} resent to JUSTICE by {actor}")
    return True


_CERTIFICATE_ID = re.compile(r"REGISTRY-(JUD-[0-9]+-[0-9]+)-CERT(?:-R[0-9]+)?")


def _certified_case(session: Session, message_id: str) -> Case | None:
    """The case a certificate's message id names (REGISTRY-<reference>-CERT[-R<n>]), locked; None for another id."""
    match = _CERTIFICATE_ID.fullmatch(message_id)
    if match is None:
        return None
    return session.scalars(select(Case).where(Case.reference == match.group(1)).with_for_update()).first()


HANDLERS = {REQUEST_TYPE: apply_request}
SCHEDULED = [("judicial-certificates", certify_pending, 30)]


# -- HTTP -----------------------------------------------------------------------------------------

class OutcomeIn(StrictIn):
    outcome: Literal["SERVED", "REFUSED", "NOT_FOUND"] = Field(
        description="SERVED: handed to the addressee; REFUSED: the addressee refused it (deemed served on the 10th "
                    "day); NOT_FOUND: the addressee could not be found at the known address")
    date: dt.date | None = Field(None, description="When it happened; default today")
    note: Text | None = Field(None, min_length=1, max_length=200, description="The post's remark, sent to JUSTICE")


router = APIRouter(prefix="/api/v1", tags=["judicial documents"])


@router.post("/cases/{reference}/outcome", summary="The post records the outcome of a judicial document; the "
                                                   "signed delivery certificate goes to JUSTICE through the hub")
async def record_outcome(reference: str, body: OutcomeIn, request: Request,
                         identity: Identity = Depends(allowed("registry:act"))):
    registry = request.app.state.registry
    day = body.date or utcnow().date()

    def work():
        with registry.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            identity.check_post(case.post_code, doing=f"recording the outcome of case {reference}")
            if case.service != SERVICE:
                return problem(409, "Not a judicial case", f"{reference} is a {case.service} case")
            if case.status != "AT_POST":
                if (case.outcome or {}).get("outcome") == body.outcome:
                    return None  # the same outcome again: nothing new
                return problem(409, "Outcome not expected", f"{reference} is {case.status}; an outcome is recorded "
                                                            "once, while the case is AT_POST")
            if day > utcnow().date() or day < case.created_at.date():
                return problem(422, "Date out of range", f"{day.isoformat()} is before the case or in the future")
            _record_outcome(session, case, outcome=body.outcome, day=day, note=body.note,
                            actor=identity.case_actor)
            audit.record(registry.hub, session, identity, audit.JUDICIAL_OUTCOME_RECORDED, reference,
                         f"{body.outcome} on {day.isoformat()}")
        _certify_quietly(registry, reference)
        return None

    refused = await run_in_threadpool(work)
    if refused is not None:
        return refused
    with registry.hub.sessions() as session:
        return case_out(service.get_case(session, reference=reference), full=True, viewer=identity)

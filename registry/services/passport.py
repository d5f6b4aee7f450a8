"""Passport application (service 2), produced by DGSN.

    SUBMITTED -> AWAITING_PARTNER -> ACKNOWLEDGED -> IN_PRODUCTION -> SHIPPED -> AVAILABLE_AT_POST
              -> DELIVERED;  REJECTED from AWAITING_PARTNER, ACKNOWLEDGED or IN_PRODUCTION

The registry sends a PassportApplication (no biometrics: the post's enrolment reference, from which
DGSN fetches them); DGSN's synchronous acknowledgement (PassportApplicationAcknowledged) carries its
reference; DGSN's status callbacks (PassportStatusUpdate) move the case on. When the passport is
available, the post hands it over (POST /api/v1/cases/{reference}/handover): the registry sends a
PassportHandover, which the hub passes to DGSN, and the case is DELIVERED.

Deliveries to the registry may arrive out of order (several workers, retries): an update for a
later status walks the case through the statuses in between; one for an earlier status is ignored.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from lxml import etree
from pydantic import Field, model_validator
from sqlalchemy.orm import Session

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.api.problems import problem
from hub.xml.envelope import Header
from registry import audit, canonical, service
from registry.inputs import StrictIn, Text
from registry.models import Case
from registry.outputs import case_out

SERVICE = "PASSPORT_APPLICATION"
PREFIX = "PAS"
ORDER = ["SUBMITTED", "AWAITING_PARTNER", "ACKNOWLEDGED", "IN_PRODUCTION", "SHIPPED", "AVAILABLE_AT_POST",
         "DELIVERED"]
MACHINE = {
    "SUBMITTED": {"AWAITING_PARTNER"},
    "AWAITING_PARTNER": {"ACKNOWLEDGED", "REJECTED"},
    "ACKNOWLEDGED": {"IN_PRODUCTION", "REJECTED"},
    "IN_PRODUCTION": {"SHIPPED", "REJECTED"},
    "SHIPPED": {"AVAILABLE_AT_POST"},
    "AVAILABLE_AT_POST": {"DELIVERED"},
    "DELIVERED": set(), "REJECTED": set(),
    "FAILED": {"ACKNOWLEDGED", "REJECTED"},  # DGSN's acknowledgement (or refusal) of a resent application
}
SENT_STATUS = "AWAITING_PARTNER"
# Deadlines (registry/deadlines.py): the case waits for DGSN in AWAITING; DGSN produces the passport and ships
# it to the post.
AWAITING = {"SUBMITTED", "AWAITING_PARTNER", "ACKNOWLEDGED", "IN_PRODUCTION", "SHIPPED"}
PARTNERS = ("DGSN",)
ANSWER_WITHIN = "30d"  # default of config/services.yaml
NS = "urn:ma:gov:consular:passport:1"
P = canonical.maker(NS, "pp")


def request_message_id(case: Case) -> str:
    return service.request_id(case)


def handover_message_id(case: Case) -> str:
    return f"REGISTRY-{case.reference}-HANDOVER"


def build_request(registry, case: Case) -> bytes:
    """The signed canonical PassportApplication for the case's citizen."""
    citizen, details = case.citizen, case.details
    applicant = [P.RegistrationId(citizen.registration_id),
                 P.LatinName(P.Given(citizen.given_name_latin), P.Family(citizen.family_name_latin)),
                 P.ArabicName(P.Given(citizen.given_name_arabic), P.Family(citizen.family_name_arabic)),
                 P.BirthDate(citizen.birth_date.isoformat())]
    if citizen.cnie:
        applicant.append(P.Cnie(citizen.cnie))
    parts = [P.CaseReference(case.reference), P.Post(case.post_code), P.Kind(details["kind"]),
             P.Applicant(*applicant), P.Sex(citizen.sex)]
    if citizen.birth_place:
        parts.append(P.BirthPlace(citizen.birth_place))
    if details.get("previous_passport"):
        parts.append(P.PreviousPassport(details["previous_passport"]))
    enrolment = details["enrolment"]
    parts += [P.BiometricEnrolment(P.Reference(enrolment["reference"]), P.CapturedAt(enrolment["captured_at"])),
              P.CollectionPost(details["collection_post"])]
    return canonical.envelope(message_id=request_message_id(case), correlation_id=case.reference,
                              document=P.PassportApplication(*parts), recipient="DGSN", signer=registry.signer,
                              created=case.created_at)


def _advance(session: Session, case: service.AnsweredCase, target: str, *, note: str) -> bool:
    """Move the case to `target`, through the statuses in between; False when it is already there or past."""
    if case.status in ("DELIVERED", "REJECTED", "CANCELLED"):
        return False
    if case.status == "FAILED" and target != "REJECTED":  # a resent application's late answer: DGSN has it
        service.move_case(session, case=case, status="ACKNOWLEDGED", actor="DGSN",
                          note=note if target == "ACKNOWLEDGED" else f"implied by {target}")
        if target == "ACKNOWLEDGED":
            return True
    if target == "REJECTED":
        if case.status == "SUBMITTED":
            service.move_case(session, case=case, status="AWAITING_PARTNER", actor="hub", note="request accepted")
        if "REJECTED" not in MACHINE[case.status]:
            return False
        return service.move_case(session, case=case, status="REJECTED", actor="DGSN", note=note)
    here, there = ORDER.index(case.status), ORDER.index(target)
    if there <= here:
        return False
    for step in ORDER[here + 1:there + 1]:
        actor = "hub" if step == "AWAITING_PARTNER" else "DGSN"
        service.move_case(session, case=case, status=step, actor=actor,
                          note=note if step == target else f"implied by {target}")
    return True


def apply_acknowledgement(registry, session: Session, header: Header, ack: etree._Element) -> str:
    reference = canonical.text(ack, "PartnerReference", NS)
    case = service.case_for_answer(session, reference=header.correlation_id)
    case.partner_reference = case.partner_reference or reference
    case.outcome = {**(case.outcome or {}), "partner_reference": reference}
    moved = _advance(session, case, "ACKNOWLEDGED", note=f"DGSN reference {reference}")
    service.save_answer(session, case)
    return f"case {case.reference} -> {case.status}" + ("" if moved else f" (acknowledgement {header.message_id} kept)")


STATUS = {"IN_PRODUCTION", "SHIPPED", "AVAILABLE_AT_POST", "REJECTED"}


def apply_status_update(registry, session: Session, header: Header, update: etree._Element) -> str:
    status = canonical.text(update, "Status", NS)
    fields = {"passport_number": "PassportNumber", "expiry_date": "ExpiryDate",
              "shipment_reference": "ShipmentReference", "reason": "Reason", "reason_text": "ReasonText"}
    found = {key: canonical.text(update, tag, NS) for key, tag in fields.items()}
    reference = canonical.text(update, "PartnerReference", NS)
    case = service.case_for_answer(session, reference=header.correlation_id)
    note = f"{status} ({reference})" + (f": {found['reason']}" if found["reason"] else "")
    moved = _advance(session, case, status, note=note)
    if moved:
        case.partner_reference = case.partner_reference or reference
        case.outcome = {**(case.outcome or {}), "partner_reference": reference,
                        **{key: value for key, value in found.items() if value is not None}}
    service.save_answer(session, case)  # also when ignored: a failed case's late update still acknowledged it
    if not moved:
        return f"case {case.reference} is {case.status}; update {header.message_id} ({status}) ignored"
    return f"case {case.reference} -> {case.status}"


HANDLERS = {"PassportApplicationAcknowledged": apply_acknowledgement, "PassportStatusUpdate": apply_status_update}


def build_handover(registry, case: Case, handed_over_on: dt.date) -> bytes:
    document = P.PassportHandover(P.CaseReference(case.reference), P.Post(case.post_code),
                                  P.PartnerReference(case.partner_reference),
                                  P.PassportNumber(case.outcome["passport_number"]),
                                  P.HandedOverOn(handed_over_on.isoformat()))
    return canonical.envelope(message_id=handover_message_id(case), correlation_id=case.reference, document=document,
                              recipient="DGSN", signer=registry.signer)


# -- HTTP -----------------------------------------------------------------------------------------

class EnrolmentIn(StrictIn):
    reference: Text = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,79}$",
                           description="The enrolment at the post's capture station (biometrics stay there; "
                                       "DGSN fetches them with this reference)")
    captured_at: dt.datetime | None = Field(None, description="When it was captured (default now)")


class PassportCaseIn(StrictIn):
    registration_id: Text = Field(pattern=r"^MRE-[0-9]{7,10}$")
    kind: Literal["FIRST", "RENEWAL", "REPLACEMENT"]
    previous_passport: Text | None = Field(None, pattern=r"^[A-Z0-9]{6,9}$")
    enrolment: EnrolmentIn
    collection_post: Text | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z0-9]{2,8}$",
                                        description="Where the passport will be collected (default: the "
                                                    "citizen's post)")

    @model_validator(mode="after")
    def _previous(self):
        if self.kind == "RENEWAL" and not self.previous_passport:
            raise ValueError("a RENEWAL names the previous_passport")
        return self


class HandoverIn(StrictIn):
    handed_over_on: dt.date | None = Field(None, description="Default: today")


router = APIRouter(prefix="/api/v1", tags=["passport application"])


@router.post("/cases/passport-application", status_code=201, summary="Apply for a passport with DGSN")
async def open_passport_case(body: PassportCaseIn, request: Request,
                             identity: Identity = Depends(allowed("registry:act"))):
    registry = request.app.state.registry
    captured_at = body.enrolment.captured_at or dt.datetime.now(dt.timezone.utc)
    if captured_at.tzinfo is None:
        captured_at = captured_at.replace(tzinfo=dt.timezone.utc)
    details = {"kind": body.kind, "previous_passport": body.previous_passport, "collection_post": body.collection_post,
               "enrolment": {"reference": body.enrolment.reference,
                             "captured_at": captured_at.isoformat(timespec="seconds")}}

    def default_collection_post(session, case):
        if not case.details.get("collection_post"):
            case.details = {**case.details, "collection_post": case.post_code}
    return await registry.open_and_submit(SERVICE, registration_id=body.registration_id, details=details,
                                          identity=identity, after_open=default_collection_post)


@router.post("/cases/{reference}/handover", summary="The post handed the passport over to its holder")
async def hand_over(reference: str, body: HandoverIn, request: Request,
                    identity: Identity = Depends(allowed("registry:act"))):
    registry = request.app.state.registry

    def work():
        with registry.hub.sessions() as session:
            case = service.get_case(session, reference=reference)
            identity.check_post(case.post_code, doing=f"handing over the passport of case {reference}")
            if case.service != SERVICE:
                return problem(409, "Not a passport case", f"{reference} is a {case.service} case")
            if case.status == "DELIVERED":
                return None
            if case.status != "AVAILABLE_AT_POST" or not (case.outcome or {}).get("passport_number"):
                return problem(409, "Passport not available", f"{reference} is {case.status}; a passport is handed "
                                                              "over once AVAILABLE_AT_POST")
            day = body.handed_over_on or dt.date.today()
            data = build_handover(registry, case, day)
        receipt = registry.submit(data)
        with registry.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            if case.status == "AVAILABLE_AT_POST":
                service.move_case(session, case=case, status="DELIVERED", actor=identity.case_actor,
                                  note=f"handed over on {day.isoformat()}; DGSN told by {receipt.message_id}")
                audit.record(registry.hub, session, identity, audit.PASSPORT_HANDED_OVER, reference,
                             f"handed over on {day.isoformat()}")
                case.outcome = {**(case.outcome or {}), "handed_over_on": day.isoformat()}
                if case.citizen is not None:
                    case.citizen.passport_number = case.outcome.get("passport_number")
        return None

    refused = await run_in_threadpool(work)
    if refused is not None:
        return refused
    with registry.hub.sessions() as session:
        return case_out(service.get_case(session, reference=reference), full=True, viewer=identity)

"""Civil-status extract (service 3): the registry asks ETAT_CIVIL for an extract of an act of the
national register; the answer is synchronous.

    SUBMITTED -> AWAITING_PARTNER -> ISSUED | NOT_FOUND

When issued, the extract signed by the civil-status service is kept with the case exactly as it
arrived (document kind CIVIL_STATUS_EXTRACT): it is evidence on its own, verifiable against
ETAT_CIVIL's certificate without the hub.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Request
from lxml import etree
from pydantic import Field
from sqlalchemy.orm import Session

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.xml.safe import to_bytes
from hub.xml.envelope import Header
from registry import canonical, service
from registry.inputs import NamesIn, StrictIn, Text
from registry.models import Case

SERVICE = "CIVIL_STATUS_EXTRACT"
PREFIX = "EXT"
MACHINE = {
    "SUBMITTED": {"AWAITING_PARTNER"},
    "AWAITING_PARTNER": {"ISSUED", "NOT_FOUND"},
    "ISSUED": set(), "NOT_FOUND": set(),
    "FAILED": {"ISSUED", "NOT_FOUND"},  # ETAT_CIVIL's answer to a resent request
}
SENT_STATUS = "AWAITING_PARTNER"
# Deadlines (registry/deadlines.py): the case waits for ETAT_CIVIL in AWAITING; the extract is answered
# synchronously.
AWAITING = {"SUBMITTED", "AWAITING_PARTNER"}
PARTNERS = ("ETAT_CIVIL",)
ANSWER_WITHIN = "1h"  # default of config/services.yaml
NS = "urn:ma:gov:consular:civil-status:1"
C = canonical.maker(NS, "cs")
DOCUMENT_KIND = "CIVIL_STATUS_EXTRACT"


def build_request(registry, case: Case) -> bytes:
    """The signed canonical CivilStatusExtractRequest for the case's act."""
    act, subject = case.details["act"], case.details["subject"]
    person = [C.RegistrationId(subject["registration_id"])] if subject.get("registration_id") else []
    person += [C.LatinName(C.Given(subject["given_name_latin"]), C.Family(subject["family_name_latin"])),
               C.ArabicName(C.Given(subject["given_name_arabic"]), C.Family(subject["family_name_arabic"])),
               C.BirthDate(subject["birth_date"])]
    document = C.CivilStatusExtractRequest(
        C.CaseReference(case.reference), C.Post(case.post_code),
        C.Act(C.Office(act["office"]), C.Year(str(act["year"])), C.Number(act["number"]), C.Kind(act["kind"])),
        C.Subject(*person))
    return canonical.envelope(message_id=service.request_id(case), correlation_id=case.reference,
                              document=document, recipient="ETAT_CIVIL", signer=registry.signer,
                              created=case.created_at)


def apply_extract(registry, session: Session, header: Header, answer: etree._Element) -> str:
    """Close the case with ETAT_CIVIL's answer; keep the signed extract when there is one."""
    case = service.get_case(session, reference=header.correlation_id, for_update=True)
    result = canonical.text(answer, "Outcome", NS)
    outcome = {"outcome": result, "partner_reference": canonical.text(answer, "PartnerReference", NS),
               "decided_at": canonical.text(answer, "DecidedAt", NS), "reason": canonical.text(answer, "Reason", NS),
               "reason_text": canonical.text(answer, "ReasonText", NS)}
    holder = answer.find(f"{{{NS}}}Extract")
    extract = holder[0] if holder is not None and len(holder) else None
    if extract is not None:
        signed = canonical.verify_partner_artefact(registry, extract, "ETAT_CIVIL")  # the register's own seal
        outcome["extract_number"] = signed.findtext("{*}NumeroExtrait")
    if case.status == "SUBMITTED":  # a synchronous answer can overtake the registry's own bookkeeping
        service.move_case(session, case=case, status="AWAITING_PARTNER", actor="hub", note="request accepted")
    if not service.move_case(session, case=case, status=result, actor="ETAT_CIVIL",
                             note=f"{result} ({outcome['reason'] or outcome['partner_reference']})"):
        return f"case {case.reference} already final ({case.status}); answer {header.message_id} ignored"
    case.outcome, case.partner_reference = outcome, outcome["partner_reference"]
    if extract is not None:
        service.attach_document(session, case=case, kind=DOCUMENT_KIND, content=to_bytes(extract),
                                source_message_id=header.message_id)
    return f"case {case.reference} -> {case.status}"


HANDLERS = {"CivilStatusExtract": apply_extract}


# -- HTTP -----------------------------------------------------------------------------------------

class ActIn(StrictIn):
    office: Text = Field(pattern=r"^[A-Z0-9][A-Z0-9\-]{1,19}$", description="Civil-status office holding the act",
                        examples=["1441011"])
    year: int = Field(ge=1900, le=2100)
    number: Text = Field(pattern=r"^[0-9]{1,8}$", description="Act number in that office's register for that year")
    kind: Literal["BIRTH", "MARRIAGE", "DEATH"]


class SubjectIn(NamesIn):
    birth_date: dt.date


class ExtractCaseIn(StrictIn):
    registration_id: Text = Field(pattern=r"^MRE-[0-9]{7,10}$", description="The registered citizen asking")
    act: ActIn
    subject: SubjectIn | None = Field(None, description="The person the act names, when not the applicant "
                                                        "(e.g. a parent's death act)")


router = APIRouter(prefix="/api/v1", tags=["civil-status extract"])


@router.post("/cases/civil-status-extract", status_code=201,
             summary="Ask the national civil-status register for an extract of an act")
async def open_extract_case(body: ExtractCaseIn, request: Request,
                            identity: Identity = Depends(allowed("registry:act"))):
    details = {"act": body.act.model_dump(), "subject": body.subject.model_dump(mode="json") if body.subject else None}

    def complete(session, case: Case) -> None:
        if details["subject"] is None:  # the applicant's own act
            citizen = case.citizen
            # a new dict, not `details` changed in place: the case row was inserted with that very object,
            # and SQLAlchemy writes a JSON column only when the new value differs from it
            case.details = {**details, "subject": {
                "registration_id": citizen.registration_id, "given_name_latin": citizen.given_name_latin,
                "family_name_latin": citizen.family_name_latin, "given_name_arabic": citizen.given_name_arabic,
                "family_name_arabic": citizen.family_name_arabic, "birth_date": citizen.birth_date.isoformat()}}

    return await request.app.state.registry.open_and_submit(SERVICE, registration_id=body.registration_id,
                                                            details=details, identity=identity,
                                                            after_open=complete)

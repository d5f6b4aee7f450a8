"""Transcription of a birth or death registered abroad (service 4): the registry asks ETAT_CIVIL to
transcribe a foreign act into the national register; ETAT_CIVIL acknowledges at once and decides
later, by callback.

    SUBMITTED -> AWAITING_PARTNER -> ACKNOWLEDGED -> TRANSCRIBED | REJECTED

The acknowledgement gives the register's file reference; the decision gives the Moroccan act
(office, year, number) or a reason code (e.g. PIECES_MANQUANTES). The decision may overtake the
acknowledgement: it is applied from AWAITING_PARTNER too, and a late acknowledgement is ignored.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Request
from lxml import etree
from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.xml.envelope import Header
from registry import canonical, citizens, service
from registry.inputs import NamesIn, StrictIn, Text
from registry.models import Case, Citizen

SERVICE = "TRANSCRIPTION"
PREFIX = "TRN"
MACHINE = {
    "SUBMITTED": {"AWAITING_PARTNER"},
    "AWAITING_PARTNER": {"ACKNOWLEDGED", "TRANSCRIBED", "REJECTED"},
    "ACKNOWLEDGED": {"TRANSCRIBED", "REJECTED"},
    "TRANSCRIBED": set(), "REJECTED": set(),
    "FAILED": {"ACKNOWLEDGED", "TRANSCRIBED", "REJECTED"},  # ETAT_CIVIL's answers to a resent request
}
SENT_STATUS = "AWAITING_PARTNER"
# Deadlines (registry/deadlines.py): the case waits for ETAT_CIVIL in AWAITING; ETAT_CIVIL decides by
# callback, after its acknowledgement.
AWAITING = {"SUBMITTED", "AWAITING_PARTNER", "ACKNOWLEDGED"}
PARTNERS = ("ETAT_CIVIL",)
ANSWER_WITHIN = "30d"  # default of config/services.yaml
NS = "urn:ma:gov:consular:civil-status:1"
C = canonical.maker(NS, "cs")


def _names(who: dict) -> list[etree._Element]:
    return [C.LatinName(C.Given(who["given_name_latin"]), C.Family(who["family_name_latin"])),
            C.ArabicName(C.Given(who["given_name_arabic"]), C.Family(who["family_name_arabic"]))]


def build_request(registry, case: Case) -> bytes:
    """The signed canonical TranscriptionRequest."""
    d = case.details
    person, act, place = d["person"], d["foreign_act"], d["event_place"]
    document = C.TranscriptionRequest(
        C.CaseReference(case.reference), C.Post(case.post_code), C.Event(d["event"]), C.EventDate(d["event_date"]),
        C.EventPlace(C.Country(place["country"]), C.City(place["city"])),
        C.ForeignAct(C.Country(act["country"]), C.Authority(act["authority"]), C.Number(act["number"]),
                     C.Date(act["date"])),
        C.Person(*_names(person), C.Sex(person["sex"]), C.BirthDate(person["birth_date"])))
    for tag, parent in (("Father", d.get("father")), ("Mother", d.get("mother"))):
        if parent:
            document.append(C(tag, *_names(parent)))
    if case.citizen is not None:
        document.append(C.Applicant(case.citizen.registration_id))
    return canonical.envelope(message_id=service.request_id(case), correlation_id=case.reference,
                              document=document, recipient="ETAT_CIVIL", signer=registry.signer,
                              created=case.created_at)


def _case_awaiting(session: Session, reference: str) -> Case:
    case = service.get_case(session, reference=reference, for_update=True)
    if case.status == "SUBMITTED":  # the partner's answer can overtake the registry's own bookkeeping
        service.move_case(session, case=case, status="AWAITING_PARTNER", actor="hub", note="request accepted")
    return case


def apply_acknowledgement(registry, session: Session, header: Header, ack: etree._Element) -> str:
    case = _case_awaiting(session, header.correlation_id)
    if case.status not in ("AWAITING_PARTNER", "FAILED"):  # FAILED: the late answer to a resent request
        return f"case {case.reference} already {case.status}; acknowledgement {header.message_id} ignored"
    reference = canonical.text(ack, "PartnerReference", NS)
    service.move_case(session, case=case, status="ACKNOWLEDGED", actor="ETAT_CIVIL", note=f"file {reference}")
    case.partner_reference = reference
    return f"case {case.reference} -> ACKNOWLEDGED ({reference})"


def apply_result(registry, session: Session, header: Header, result: etree._Element) -> str:
    case = _case_awaiting(session, header.correlation_id)
    decision = canonical.text(result, "Decision", NS)
    outcome = {"decision": decision, "partner_reference": canonical.text(result, "PartnerReference", NS),
               "decided_at": canonical.text(result, "DecidedAt", NS), "reason": canonical.text(result, "Reason", NS),
               "reason_text": canonical.text(result, "ReasonText", NS)}
    act = result.find(f"{{{NS}}}MoroccanAct")
    if act is not None:
        outcome["moroccan_act"] = {key.lower(): canonical.text(act, key, NS)
                                   for key in ("Office", "Year", "Number", "Kind")}
    note = (f"act {outcome['moroccan_act']['number']}/{outcome['moroccan_act']['year']} at "
            f"{outcome['moroccan_act']['office']}" if act is not None else f"reason {outcome['reason']}")
    if not service.move_case(session, case=case, status=decision, actor="ETAT_CIVIL", note=note):
        return f"case {case.reference} already final ({case.status}); result {header.message_id} ignored"
    case.outcome, case.partner_reference = outcome, outcome["partner_reference"]
    deceased = _deceased_citizen(session, case)
    if decision == "TRANSCRIBED" and deceased is not None:
        citizens.death_reported(session, deceased, died_on=dt.date.fromisoformat(case.details["event_date"]),
                                case_reference=case.reference, what="death transcribed into the national register")
    return f"case {case.reference} -> {case.status}"


def _deceased_citizen(session: Session, case: Case) -> Citizen | None:
    """The registered citizen whose death a DEATH transcription is about: the one named by
    `deceased_registration_id`, else the applicant when the person is the applicant (same birth date and
    names); None for a birth, or a deceased nobody registered."""
    d = case.details
    if d.get("event") != "DEATH":
        return None
    if d.get("deceased_registration_id"):
        return session.scalars(select(Citizen).where(Citizen.registration_id == d["deceased_registration_id"])).first()
    citizen, person = case.citizen, d["person"]
    if citizen is not None and citizen.birth_date.isoformat() == person["birth_date"] and \
            (citizens.folded(citizen.given_name_latin), citizens.folded(citizen.family_name_latin)) == \
            (citizens.folded(person["given_name_latin"]), citizens.folded(person["family_name_latin"])):
        return citizen
    return None


HANDLERS = {"TranscriptionAcknowledged": apply_acknowledgement, "TranscriptionResult": apply_result}


# -- HTTP -----------------------------------------------------------------------------------------

class PersonIn(NamesIn):
    sex: Literal["F", "M"]
    birth_date: dt.date


class PlaceIn(StrictIn):
    country: Text = Field(pattern=r"^[A-Z]{2}$")
    city: Text = Field(min_length=1, max_length=100)


class ForeignActIn(StrictIn):
    country: Text = Field(pattern=r"^[A-Z]{2}$")
    authority: Text = Field(min_length=1, max_length=100, examples=["Mairie du 15e arrondissement de Paris"])
    number: Text = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9/\-]{0,39}$", examples=["2026/1520"])
    date: dt.date


class TranscriptionCaseIn(StrictIn):
    registration_id: Text = Field(pattern=r"^MRE-[0-9]{7,10}$", description="The registered citizen asking")
    event: Literal["BIRTH", "DEATH"]
    event_date: dt.date
    event_place: PlaceIn
    foreign_act: ForeignActIn
    person: PersonIn = Field(description="The child born, or the person deceased")
    deceased_registration_id: Text | None = Field(None, pattern=r"^MRE-[0-9]{7,10}$",
                                                 description="DEATH: the deceased's registration, when registered "
                                                             "(recorded DECEASED once the death is transcribed)")
    father: NamesIn | None = None
    mother: NamesIn | None = None

    @model_validator(mode="after")
    def _dates(self):
        if self.event == "BIRTH" and self.person.birth_date != self.event_date:
            raise ValueError("for a birth, person.birth_date is the event_date")
        if self.deceased_registration_id and self.event != "DEATH":
            raise ValueError("deceased_registration_id is for a DEATH")
        if self.person.birth_date > self.event_date or self.foreign_act.date < self.event_date:
            raise ValueError("dates out of order: birth <= event <= foreign act")
        return self


router = APIRouter(prefix="/api/v1", tags=["transcription of acts registered abroad"])


@router.post("/cases/transcription", status_code=201,
             summary="Ask the national register to transcribe a birth or death registered abroad")
async def open_transcription_case(body: TranscriptionCaseIn, request: Request,
                                  identity: Identity = Depends(allowed("registry:act"))):
    details = body.model_dump(mode="json", exclude={"registration_id"}, exclude_none=True)

    def deceased_known(session, case: Case) -> None:  # the deceased named is a record of the agent's post
        if body.deceased_registration_id:
            deceased = service.get_citizen(session, registration_id=body.deceased_registration_id)
            identity.check_post(deceased.post_code, doing=f"naming {deceased.registration_id} as deceased")

    return await request.app.state.registry.open_and_submit(SERVICE, registration_id=body.registration_id,
                                                            details=details, identity=identity,
                                                            after_open=deceased_known)

"""Repatriation of remains (service 5): one request, three authorities, one decision.

    SUBMITTED -> AWAITING_CLEARANCES -> AUTHORISED   all three (SANTE, ETAT_CIVIL, DGSN) granted
                                     -> REFUSED      as soon as one refuses
                                     -> ESCALATED    one has not answered by the deadline; the case
                                                     stays open for AUTHORISED / REFUSED

The hub fans the request out (config/routes/repatriation.yaml); each authority's answer comes back
as a RepatriationClearance. Families wait on this for a burial, so the deadline is counted in hours
(HUB_REPATRIATION_DEADLINE_SECONDS, default 6 h; checked every 30 s).
The cause of death is kept with the case and mapped to SANTE only; it and SANTE's reasons are health
data, shown only to the roles registry/outputs.py allows. When the deceased drew a pension,
a death notice goes to CDG in the next life-certificate batch.
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
from hub.store.db import utcnow
from hub.xml.safe import to_bytes
from hub.xml.envelope import Header
from registry import canonical, citizens, service
from registry.inputs import CNIE, NamesIn, StrictIn, Text
from registry.models import Case
from registry.outputs import HEALTH_AUTHORITY

SERVICE = "REPATRIATION"
PREFIX = "REP"
MACHINE = {
    "SUBMITTED": {"AWAITING_CLEARANCES"},
    "AWAITING_CLEARANCES": {"AUTHORISED", "REFUSED", "ESCALATED"},
    "ESCALATED": {"AUTHORISED", "REFUSED"},
    "AUTHORISED": set(), "REFUSED": set(),
    # a clearance that comes after one authority's request was dead-lettered (and resent) still decides the case
    "FAILED": {"AUTHORISED", "REFUSED"},
}
SENT_STATUS = "AWAITING_CLEARANCES"
# Deadlines (registry/deadlines.py): the case waits for SANTE, ETAT_CIVIL, DGSN in AWAITING; the burial
# deadline: HUB_REPATRIATION_DEADLINE_SECONDS.
AWAITING = {"SUBMITTED", "AWAITING_CLEARANCES", "ESCALATED"}
PARTNERS = ("SANTE", "ETAT_CIVIL", "DGSN")
AUTHORITIES = ("SANTE", "ETAT_CIVIL", "DGSN")
NS = "urn:ma:gov:consular:repatriation:1"
R = canonical.maker(NS, "rep")


def build_request(registry, case: Case) -> bytes:
    d = case.details
    deceased, death, burial, transport = d["deceased"], d["death"], d["burial"], d["transport"]
    person = []
    if deceased.get("registration_id"):
        person.append(R.RegistrationId(deceased["registration_id"]))
    person += [R.LatinName(R.Given(deceased["given_name_latin"]), R.Family(deceased["family_name_latin"])),
               R.ArabicName(R.Given(deceased["given_name_arabic"]), R.Family(deceased["family_name_arabic"])),
               R.BirthDate(deceased["birth_date"]), R.Sex(deceased["sex"])]
    if deceased.get("cnie"):
        person.append(R.Cnie(deceased["cnie"]))
    place = [R.Commune(burial["commune"]), R.CommuneName(burial["commune_name"])]
    if burial.get("province"):
        place.append(R.Province(burial["province"]))
    document = R.RepatriationRequest(
        R.CaseReference(case.reference), R.Post(case.post_code), R.Deceased(*person),
        R.Death(R.Date(death["date"]), R.Country(death["country"]), R.City(death["city"]),
                R.Cause(R.Code(death["cause_code"]), R.Text(death["cause_text"]))),
        R.Burial(*place),
        R.Transport(R.EntryPoint(transport["entry_point"]), R.ArrivalDate(transport["arrival_date"]),
                    R.Carrier(transport["carrier"]), R.SealNumber(transport["seal_number"])))
    return canonical.envelope(message_id=service.request_id(case), correlation_id=case.reference,
                              document=document, recipient="SANTE", signer=registry.signer, created=case.created_at)


def apply_clearance(registry, session: Session, header: Header, clearance: etree._Element) -> str:
    """Record one authority's decision; decide the case when it can be decided."""
    authority = canonical.text(clearance, "Authority", NS)
    decision = {"decision": canonical.text(clearance, "Decision", NS),
                "reason": canonical.text(clearance, "Reason", NS),
                "reason_text": canonical.text(clearance, "ReasonText", NS),
                "partner_reference": canonical.text(clearance, "PartnerReference", NS),
                "decided_at": canonical.text(clearance, "DecidedAt", NS), "message_id": header.message_id}
    document = to_bytes(clearance)
    case = service.case_for_answer(session, reference=header.correlation_id)
    outcome = dict(case.outcome or {})
    clearances = dict(outcome.get("clearances", {}))
    if authority in clearances:
        return f"case {case.reference}: {authority} had already answered; {header.message_id} ignored"
    clearances[authority] = decision
    case.outcome = {**outcome, "clearances": clearances}
    service.attach_document(session, case=case, kind=f"CLEARANCE_{authority}", content=document,
                            source_message_id=header.message_id)
    if case.status == "SUBMITTED":  # the answers can overtake the registry's own bookkeeping
        service.move_case(session, case=case, status="AWAITING_CLEARANCES", actor="hub", note="request accepted")
    if decision["decision"] == "REFUSED":
        # SANTE's reason is health data (registry/outputs.py): the history, which every reader of the case sees,
        # only points to it
        reason = ("its reason is health data, in its clearance" if authority == HEALTH_AUTHORITY
                  else decision["reason"] or "no reason given")
        service.move_case(session, case=case, status="REFUSED", actor=authority, note=f"{authority} refused: {reason}")
    elif all(clearances.get(a, {}).get("decision") == "GRANTED" for a in AUTHORITIES):
        service.move_case(session, case=case, status="AUTHORISED", actor="hub",
                          note="SANTE, ETAT_CIVIL and DGSN have all granted")
    service.save_answer(session, case)
    return f"case {case.reference}: {authority} {decision['decision']} -> {case.status}"


def escalate_overdue(registry) -> int:
    """Cases still waiting for an authority past their deadline become ESCALATED; returns how many.

    The waiting cases are looked at with a plain read (no write lock: on SQLite, the hub's deliveries would wait
    for it), and only those overdue are locked, checked again and moved. A case without a deadline is left."""
    now = utcnow()
    with registry.hub.reads() as session:
        waiting = session.execute(select(Case.id, Case.details).where(Case.service == SERVICE,
                                                                      Case.status == "AWAITING_CLEARANCES")).all()
    overdue = [case_id for case_id, details in waiting if _overdue(details, now)]
    if not overdue:
        return 0
    escalated = 0
    with registry.hub.sessions.begin() as session:
        for case in session.scalars(select(Case).where(Case.id.in_(overdue), Case.status == "AWAITING_CLEARANCES")
                                    .with_for_update()):
            if not _overdue(case.details, now):
                continue
            answered = set((case.outcome or {}).get("clearances", {}))
            missing = [a for a in AUTHORITIES if a not in answered]
            service.move_case(session, case=case, status="ESCALATED", actor="hub",
                              note=f"no answer by the deadline from {', '.join(missing)}")
            escalated += 1
    return escalated


def _overdue(details: dict | None, now: dt.datetime) -> bool:
    deadline = (details or {}).get("deadline_at")
    return deadline is not None and dt.datetime.fromisoformat(deadline) <= now


HANDLERS = {"RepatriationClearance": apply_clearance}
SCHEDULED = [("escalate-overdue-repatriations", escalate_overdue, 30.0)]


# -- HTTP -----------------------------------------------------------------------------------------

class DeceasedIn(NamesIn):
    birth_date: dt.date
    sex: Literal["F", "M"]
    cnie: Text | None = Field(None, pattern=CNIE)


class DeathIn(StrictIn):
    date: dt.date
    country: Text = Field(pattern=r"^[A-Z]{2}$")
    city: Text = Field(min_length=1, max_length=100)
    cause_code: Text = Field(pattern=r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$", description="ICD-10 code (health data: "
                                                                                      "sent to SANTE only)")
    cause_text: Text = Field(min_length=1, max_length=100)


class BurialIn(StrictIn):
    commune: Text = Field(pattern=r"^[0-9]{7}$", description="HCP commune code of the place of burial")
    commune_name: Text = Field(min_length=1, max_length=100)
    province: Text | None = Field(None, max_length=100)


class TransportIn(StrictIn):
    entry_point: Text = Field(pattern=r"^[A-Z]{3}(-[A-Z]{2,6})?$", description="Border post: airport (CMN) or "
                                                                               "port (TNG-MED)")
    arrival_date: dt.date
    carrier: Text = Field(min_length=1, max_length=100)
    seal_number: Text = Field(min_length=1, max_length=40)


class PensionIn(StrictIn):
    pension_number: Text = Field(pattern=r"^[0-9]{6,12}$")
    fund: Literal["CNRA", "RCAR"]


class RepatriationIn(StrictIn):
    registration_id: Text | None = Field(None, pattern=r"^MRE-[0-9]{7,10}$",
                                        description="The deceased's registration, when registered")
    deceased: DeceasedIn | None = Field(None, description="Identity of a deceased who was not registered")
    post_code: Text | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z0-9]{2,8}$",
                                  description="Post handling the case (default: the deceased's post)")
    death: DeathIn
    burial: BurialIn
    transport: TransportIn
    pension: PensionIn | None = Field(None, description="When the deceased drew a pension: a death notice "
                                                        "goes to CDG in the next batch")

    @model_validator(mode="after")
    def _identity(self):
        if bool(self.registration_id) == bool(self.deceased):
            raise ValueError("give either registration_id (a registered deceased) or deceased (identity)")
        if self.deceased and not self.post_code:
            raise ValueError("post_code is required when the deceased was not registered")
        return self


router = APIRouter(prefix="/api/v1", tags=["repatriation of remains"])


@router.post("/cases/repatriation", status_code=201,
             summary="Request the repatriation of remains: health, burial and border clearances at once")
async def open_repatriation_case(body: RepatriationIn, request: Request,
                                 identity: Identity = Depends(allowed("registry:act"))):
    registry = request.app.state.registry
    deadline = utcnow() + dt.timedelta(seconds=registry.hub.settings.repatriation_deadline_seconds)
    details = {"death": body.death.model_dump(mode="json"), "burial": body.burial.model_dump(mode="json"),
               "transport": body.transport.model_dump(mode="json"), "deadline_at": deadline.isoformat()}
    if body.pension:
        details["pension"] = body.pension.model_dump()

    def complete(session, case: Case) -> None:
        citizen = case.citizen
        if citizen is not None:
            deceased = {"registration_id": citizen.registration_id, "given_name_latin": citizen.given_name_latin,
                        "family_name_latin": citizen.family_name_latin, "given_name_arabic": citizen.given_name_arabic,
                        "family_name_arabic": citizen.family_name_arabic, "birth_date": citizen.birth_date.isoformat(),
                        "sex": citizen.sex, "cnie": citizen.cnie}
        else:
            deceased = body.deceased.model_dump(mode="json")
        case.details = {**case.details, "deceased": deceased}  # a new dict: JSON columns see reassignment only
        if citizen is not None:  # the post holds the death certificate: the record says so from now on
            citizens.death_reported(session, citizen, died_on=body.death.date, case_reference=case.reference,
                                    what="repatriation of the remains requested")
        if body.pension:
            from registry.services.life_certificates import record_death_notice
            record_death_notice(session, repatriation_case=case, pension_number=body.pension.pension_number,
                                fund=body.pension.fund, date_of_death=body.death.date)

    return await registry.open_and_submit(SERVICE, registration_id=body.registration_id, details=details,
                                          identity=identity, post_code=body.post_code, after_open=complete)

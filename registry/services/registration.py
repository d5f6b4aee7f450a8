"""Consular registration (service 1: new, renewal, update), checked with DGSN.

    SUBMITTED -> IDENTITY_CHECK -> ACTIVE | REJECTED

The registry sends a ConsularRegistrationRequest; the hub asks DGSN to verify the identity
(VerifierIdentite, answered synchronously) and, for an UPDATE that changes the address abroad, also
notifies DGSN of the new address (config/routes/registration.yaml). DGSN's answer arrives as an
IdentityCheckResult: MATCH makes the registration ACTIVE (a NEW citizen becomes ACTIVE, an UPDATE's
new address is recorded), MISMATCH or UNKNOWN rejects it (a NEW citizen becomes REJECTED).
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
from hub.xml.envelope import Header
from registry import audit, canonical, citizens, service
from registry.inputs import PersonIn, StrictIn, Text
from registry.models import Case, Citizen
from registry.outputs import case_out

SERVICE = "CONSULAR_REGISTRATION"
PREFIX = "REG"
MACHINE = {
    "SUBMITTED": {"IDENTITY_CHECK"},
    "IDENTITY_CHECK": {"ACTIVE", "REJECTED"},
    "ACTIVE": set(), "REJECTED": set(),
    "FAILED": {"ACTIVE", "REJECTED"},  # DGSN's identity check of a resent request
}
SENT_STATUS = "IDENTITY_CHECK"
# Deadlines (registry/deadlines.py): the case waits for DGSN in AWAITING; DGSN answers the identity check
# synchronously.
AWAITING = {"SUBMITTED", "IDENTITY_CHECK"}
PARTNERS = ("DGSN",)
ANSWER_WITHIN = "1h"  # default of config/services.yaml
NS = "urn:ma:gov:consular:registration:1"
REQUEST_TYPE = "ConsularRegistrationRequest"
RESULT_TYPE = "IdentityCheckResult"
R = canonical.maker(NS, "reg")


def request_message_id(case: Case) -> str:
    return service.request_id(case)


def _address(details: dict, citizen: Citizen) -> dict:
    """The address abroad the request carries: the new one of an UPDATE, else the one on record."""
    if details.get("address"):
        return details["address"]
    lines = [line.strip() for line in citizen.address_lines.splitlines() if line.strip()][:3]
    return {"country": citizen.country, "city": citizen.city, "lines": lines, "postal_code": None}


def build_request(registry, case: Case) -> bytes:
    """The signed canonical ConsularRegistrationRequest for the case's citizen."""
    citizen, details = case.citizen, case.details
    person = [R.RegistrationId(citizen.registration_id),
              R.LatinName(R.Given(citizen.given_name_latin), R.Family(citizen.family_name_latin)),
              R.ArabicName(R.Given(citizen.given_name_arabic), R.Family(citizen.family_name_arabic)),
              R.BirthDate(citizen.birth_date.isoformat())]
    if citizen.cnie:
        person.append(R.Cnie(citizen.cnie))
    address = _address(details, citizen)
    address_parts = [R.Country(address["country"]), R.City(address["city"]), *[R.Line(x) for x in address["lines"]]]
    if address.get("postal_code"):
        address_parts.append(R.PostalCode(address["postal_code"]))
    document = R.ConsularRegistrationRequest(R.CaseReference(case.reference), R.Post(case.post_code),
                                             R.Kind(details["kind"]), R.Person(*person),
                                             R.AddressAbroad(*address_parts))
    if details.get("address_change"):
        document.append(R.AddressChange(R.EffectiveDate(details["address_change"]["effective_date"])))
    return canonical.envelope(message_id=request_message_id(case), correlation_id=case.reference, document=document,
                              recipient="DGSN", signer=registry.signer, created=case.created_at)


def apply_identity_check(registry, session: Session, header: Header, result: etree._Element) -> str:
    """DGSN's verdict: ACTIVE on MATCH, REJECTED otherwise; the citizen's record follows."""
    case = service.get_case(session, reference=header.correlation_id, for_update=True)
    outcome = canonical.text(result, "Outcome", NS)
    reference = canonical.text(result, "PartnerReference", NS)
    if case.status == "SUBMITTED":  # the synchronous answer overtook the record of the hub's acceptance
        service.move_case(session, case=case, status="IDENTITY_CHECK", actor="hub", note="request accepted by the hub")
    status = "ACTIVE" if outcome == "MATCH" else "REJECTED"
    if not service.move_case(session, case=case, status=status, actor="DGSN", note=f"identity {outcome} ({reference})"):
        return f"case {case.reference} already final ({case.status}); answer {header.message_id} ignored"
    case.partner_reference = reference
    case.outcome = {"identity": outcome, "partner_reference": reference,
                    "checked_at": canonical.text(result, "CheckedAt", NS),
                    "discrepancies": [{"field": d.get("field"), "text": d.text}
                                      for d in result.iterfind(f"{{{NS}}}Discrepancy")]}
    citizen = case.citizen
    if case.details["kind"] == "NEW":
        citizens.identity_checked(session, citizen, status=status, case_reference=case.reference)
    elif status == "ACTIVE" and case.details.get("address"):
        citizens.address_confirmed(session, citizen, case.details["address"], case_reference=case.reference)
    return f"case {case.reference} -> {case.status}"


HANDLERS = {RESULT_TYPE: apply_identity_check}


# -- HTTP -----------------------------------------------------------------------------------------

class AddressIn(StrictIn):
    country: Text = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    city: Text = Field(min_length=1, max_length=80)
    lines: list[Text] = Field(min_length=1, max_length=3, description="Street address, 1 to 3 lines")
    postal_code: Text | None = Field(None, max_length=16)


class RegistrationCaseIn(StrictIn):
    kind: Literal["NEW", "RENEWAL", "UPDATE"]
    post_code: Text | None = Field(None, pattern=r"^[A-Z]{2}-[A-Z0-9]{2,8}$",
                                  description="NEW: the post registering the person")
    person: PersonIn | None = Field(None, description="NEW: the person to register")
    registration_id: Text | None = Field(None, pattern=r"^MRE-[0-9]{7,10}$", description="RENEWAL, UPDATE: who")
    address: AddressIn | None = Field(None, description="NEW: address abroad (required); UPDATE: the new "
                                                        "address abroad, also notified to DGSN")
    address_effective_date: dt.date | None = Field(None, description="UPDATE with an address: since when "
                                                                     "(default today)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "NEW":
            if not (self.person and self.post_code and self.address) or self.registration_id:
                raise ValueError("a NEW registration needs person, post_code and address, and no registration_id")
        elif not self.registration_id or self.person or self.post_code:
            raise ValueError(f"a {self.kind} needs registration_id (and no person or post_code)")
        if self.kind == "RENEWAL" and self.address:
            raise ValueError("a RENEWAL carries no address: change it with an UPDATE")
        return self


router = APIRouter(prefix="/api/v1", tags=["consular registration"])


@router.post("/cases/consular-registration", status_code=201,
             summary="Register a person (NEW), renew or update a registration; DGSN checks the identity")
async def open_registration_case(body: RegistrationCaseIn, request: Request,
                                 identity: Identity = Depends(allowed("registry:act"))):
    registry = request.app.state.registry
    doing = f"opening a {body.kind} registration"
    if body.kind == "NEW":
        identity.check_post(body.post_code, doing=f"{doing} at {body.post_code}")
    details = {"kind": body.kind, "address": body.address.model_dump() if body.kind == "UPDATE" and body.address
               else None, "address_change": None}
    if details["address"]:
        details["address_change"] = {"effective_date": (body.address_effective_date or dt.date.today()).isoformat()}

    warnings: list[dict] = []

    def work() -> str:
        with registry.hub.sessions.begin() as session:
            if body.kind == "NEW":
                address = body.address
                citizen, found = citizens.register(
                    session, actor=identity.actor, scope=identity.post_scope, post_code=body.post_code,
                    country=address.country,
                    city=address.city, address_lines="\n".join(address.lines), **body.person.model_dump())
                warnings.extend(found)
                audit.record(registry.hub, session, identity, audit.CITIZEN_REGISTERED, citizen.registration_id,
                             f"at {citizen.post_code}, pending DGSN's identity check")
            else:
                citizen = service.get_citizen(session, registration_id=body.registration_id)
                identity.check_post(citizen.post_code, doing=f"{doing} for {citizen.registration_id}")
                citizens.check_may_open(citizen, SERVICE, details)
            case = service.open_case(session, service=SERVICE, citizen=citizen, details=details,
                                     actor=identity.case_actor)
            audit.record(registry.hub, session, identity, audit.CASE_OPENED, case.reference,
                         f"{SERVICE} {body.kind} at {case.post_code}")
            reference = case.reference
        registry.submit_case(reference)
        return reference

    reference = await run_in_threadpool(work)
    with registry.hub.sessions() as session:
        shown = case_out(service.get_case(session, reference=reference), full=True, viewer=identity)
    return {**shown, "warnings": warnings} if body.kind == "NEW" else shown

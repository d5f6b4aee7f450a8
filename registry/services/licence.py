"""Driving-licence authentication (service 6): the registry asks NARSA; NARSA calls back with its verdict.

    SUBMITTED -> AWAITING_PARTNER -> AUTHENTIC | NOT_AUTHENTIC | DISCREPANCY

When authentic, NARSA's attestation is kept with the case as the signed XML that arrived.
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
from registry.inputs import StrictIn, Text
from registry.models import Case

SERVICE = "LICENCE_AUTHENTICATION"
PREFIX = "LIC"
MACHINE = {
    "SUBMITTED": {"AWAITING_PARTNER"},
    "AWAITING_PARTNER": {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY"},
    "AUTHENTIC": set(), "NOT_AUTHENTIC": set(), "DISCREPANCY": set(),
    "FAILED": {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY"},  # NARSA's verdict on a resent request
}
SENT_STATUS = "AWAITING_PARTNER"
# Deadlines (registry/deadlines.py): the case waits for NARSA in AWAITING; NARSA's verdict comes by callback.
AWAITING = {"SUBMITTED", "AWAITING_PARTNER"}
PARTNERS = ("NARSA",)
ANSWER_WITHIN = "2d"  # default of config/services.yaml
NS = "urn:ma:gov:consular:licence:1"
REQUEST_TYPE = "LicenceAuthenticationRequest"
RESULT_TYPE = "LicenceAuthenticationResult"
L = canonical.maker(NS, "lic")


def request_message_id(case: Case) -> str:
    return service.request_id(case)


def build_request(registry, case: Case) -> bytes:
    """The signed canonical envelope asking NARSA to authenticate the case's licence."""
    citizen, licence = case.citizen, case.details
    holder = [L.RegistrationId(citizen.registration_id),
              L.LatinName(L.Given(citizen.given_name_latin), L.Family(citizen.family_name_latin)),
              L.ArabicName(L.Given(citizen.given_name_arabic), L.Family(citizen.family_name_arabic)),
              L.BirthDate(citizen.birth_date.isoformat())]
    if citizen.cnie:
        holder.append(L.Cnie(citizen.cnie))
    document = L.LicenceAuthenticationRequest(
        L.CaseReference(case.reference), L.Post(case.post_code), L.Holder(*holder),
        L.Licence(L.Number(licence["number"]), *[L.Category(c) for c in licence["categories"]],
                  L.IssueDate(licence["issue_date"])),
        L.CountryOfResidence(citizen.country))
    return canonical.envelope(message_id=request_message_id(case), correlation_id=case.reference, document=document,
                              recipient="NARSA", signer=registry.signer, created=case.created_at)


def apply_result(registry, session: Session, header: Header, result: etree._Element) -> str:
    """Move the case to NARSA's verdict and keep the signed attestation; returns what happened."""
    case = service.get_case(session, reference=header.correlation_id, for_update=True)
    verdict = canonical.text(result, "Verdict", NS)
    outcome = {"verdict": verdict, "partner_reference": canonical.text(result, "PartnerReference", NS),
               "decided_at": canonical.text(result, "DecidedAt", NS),
               "discrepancies": [{"field": d.get("field"), "text": d.text}
                                 for d in result.iterfind(f"{{{NS}}}Discrepancy")]}
    holder = result.find(f"{{{NS}}}Attestation")
    attestation = holder[0] if holder is not None and len(holder) else None
    if attestation is not None:
        signed = canonical.verify_partner_artefact(registry, attestation, "NARSA")  # NARSA's own seal
        outcome["attestation_valid_until"] = signed.findtext("{*}ValableJusquAu")
    if case.status == "SUBMITTED":  # the answer can overtake the registry's own bookkeeping
        service.move_case(session, case=case, status=SENT_STATUS, actor="hub", note="request accepted")
    if not service.move_case(session, case=case, status=verdict, actor="NARSA",
                             note=f"verdict {verdict} ({outcome['partner_reference']})"):
        return f"case {case.reference} already final ({case.status}); answer {header.message_id} ignored"
    case.outcome, case.partner_reference = outcome, outcome["partner_reference"]
    if attestation is not None:
        service.attach_document(session, case=case, kind="NARSA_ATTESTATION", content=to_bytes(attestation),
                                source_message_id=header.message_id)
    return f"case {case.reference} -> {case.status}"


HANDLERS = {RESULT_TYPE: apply_result}


# -- HTTP -----------------------------------------------------------------------------------------

class LicenceIn(StrictIn):
    number: Text = Field(pattern=r"^[0-9]{1,2}/[0-9]{4,8}$", examples=["12/345678"])
    categories: list[Literal["A", "A1", "B", "C", "D", "EB", "EC", "ED"]] = Field(min_length=1, max_length=8)
    issue_date: dt.date


class LicenceCaseIn(StrictIn):
    registration_id: Text = Field(pattern=r"^MRE-[0-9]{7,10}$")
    licence: LicenceIn


router = APIRouter(prefix="/api/v1", tags=["driving-licence authentication"])


@router.post("/cases/licence-authentication", status_code=201,
             summary="Ask NARSA to authenticate a Moroccan driving licence")
async def open_licence_case(body: LicenceCaseIn, request: Request,
                            identity: Identity = Depends(allowed("registry:act"))):
    details = {"number": body.licence.number, "categories": body.licence.categories,
               "issue_date": body.licence.issue_date.isoformat()}
    return await request.app.state.registry.open_and_submit(SERVICE, registration_id=body.registration_id,
                                                            details=details, identity=identity)

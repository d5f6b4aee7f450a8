"""Driving-licence authentication (service 6): the canonical request, and NARSA's answer applied."""
from __future__ import annotations

import datetime as dt

from lxml import etree
from sqlalchemy.orm import Session

from hub.intake import business_document, read_header
from hub.schemas import ENVELOPE_NS
from hub.signing import Signer, verify
from hub.xmlsafe import to_bytes
from registry import service
from registry.models import Case, Citizen
from registry.statuses import LICENCE_AUTHENTICATION

LIC_NS = "urn:ma:gov:consular:licence:1"
REQUEST_TYPE = "LicenceAuthenticationRequest"
RESULT_TYPE = "LicenceAuthenticationResult"
VERDICT_STATUS = {"AUTHENTIC": "AUTHENTIC", "NOT_AUTHENTIC": "NOT_AUTHENTIC", "DISCREPANCY": "DISCREPANCY"}


def request_message_id(case: Case) -> str:
    # Deterministic: submitting the same case again is recognised by the hub as the same message.
    return f"REGISTRY-{case.reference}"


def build_request(case: Case, citizen: Citizen, signer: Signer) -> bytes:
    """The signed canonical envelope asking NARSA to authenticate the case's licence."""
    E = lambda tag: f"{{{ENVELOPE_NS}}}{tag}"  # noqa: E731
    L = lambda tag: f"{{{LIC_NS}}}{tag}"  # noqa: E731

    def sub(parent, tag, text=None, ns=L):
        el = etree.SubElement(parent, ns(tag))
        if text is not None:
            el.text = text
        return el

    envelope = etree.Element(E("Message"), nsmap={"env": ENVELOPE_NS})
    header = sub(envelope, "Header", ns=E)
    for tag, value in (("MessageId", request_message_id(case)), ("CorrelationId", case.reference),
                       ("Type", REQUEST_TYPE), ("Sender", "REGISTRY"), ("Recipient", "NARSA"),
                       ("Created", case.created_at.isoformat(timespec="seconds"))):
        sub(header, tag, value, ns=E)
    body = sub(envelope, "Body", ns=E)
    doc = etree.Element(L(REQUEST_TYPE), nsmap={"lic": LIC_NS})
    sub(doc, "CaseReference", case.reference)
    sub(doc, "Post", case.post_code)
    holder = sub(doc, "Holder")
    sub(holder, "RegistrationId", citizen.registration_id)
    latin = sub(holder, "LatinName")
    sub(latin, "Given", citizen.given_name_latin)
    sub(latin, "Family", citizen.family_name_latin)
    arabic = sub(holder, "ArabicName")
    sub(arabic, "Given", citizen.given_name_arabic)
    sub(arabic, "Family", citizen.family_name_arabic)
    sub(holder, "BirthDate", citizen.birth_date.isoformat())
    if citizen.cnie:
        sub(holder, "Cnie", citizen.cnie)
    licence = sub(doc, "Licence")
    sub(licence, "Number", case.details["number"])
    for category in case.details["categories"]:
        sub(licence, "Category", category)
    sub(licence, "IssueDate", case.details["issue_date"])
    sub(doc, "CountryOfResidence", citizen.country)
    body.append(signer.sign(doc))
    return to_bytes(envelope)


def apply_result(session: Session, envelope: etree._Element, *, hub_certificate, narsa_certificate) -> str:
    """Move the case to NARSA's verdict and keep the signed attestation; returns what happened."""
    header = read_header(envelope)
    result = verify(business_document(envelope), hub_certificate, signer_name="hub")
    case = service.get_case(session, reference=header.correlation_id, for_update=True)
    verdict = result.findtext(f"{{{LIC_NS}}}Verdict")
    outcome = {"verdict": verdict, "partner_reference": result.findtext(f"{{{LIC_NS}}}PartnerReference"),
               "decided_at": result.findtext(f"{{{LIC_NS}}}DecidedAt"),
               "discrepancies": [{"field": d.get("field"), "text": d.text}
                                 for d in result.iterfind(f"{{{LIC_NS}}}Discrepancy")]}
    holder = result.find(f"{{{LIC_NS}}}Attestation")
    if holder is not None and len(holder):
        attestation = verify(holder[0], narsa_certificate, signer_name="NARSA")  # NARSA's own seal
        outcome["attestation_valid_until"] = attestation.findtext("{*}ValableJusquAu")
    if not service.move_case(session, case=case, status=VERDICT_STATUS[verdict], actor="NARSA",
                             note=f"verdict {verdict} ({outcome['partner_reference']})"):
        return f"case {case.reference} already final ({case.status}); answer {header.message_id} ignored"
    case.outcome, case.partner_reference = outcome, outcome["partner_reference"]
    if holder is not None and len(holder):
        service.attach_document(session, case=case, kind="NARSA_ATTESTATION", content=to_bytes(holder[0]),
                                source_message_id=header.message_id)
    return f"case {case.reference} -> {case.status}"


def licence_details(number: str, categories: list[str], issue_date: dt.date) -> dict:
    return {"number": number, "categories": categories, "issue_date": issue_date.isoformat()}


SERVICE = LICENCE_AUTHENTICATION
PREFIX = "LIC"

"""What each kind of document prints, as lines of label and value: the registry's own registration certificate
of an ACTIVE citizen, and the printable forms of what a case holds (the civil-status extract and the licence
attestation as their partner signed them, the judicial delivery certificate as the registry certified it).

A `Printable` is plain data, read in the transaction that checks who may print it (rendering comes after);
NothingToPrint (409) says why there is none. Labels are English msgids translated into the document's language
(hub/monitor/locale); values are printed as they are, each marked with its writing direction so that an Arabic
name in a French document, or an identifier in an Arabic one, keeps its order.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from hub.errors import NothingToPrint
from hub.monitor.catalogue import N_
from hub.xml.safe import parse_trusted
from registry.models import Case, Citizen, Post
from registry.outputs import _full_name

REGISTRATION_CERTIFICATE = "REGISTRATION_CERTIFICATE"
CIVIL_STATUS_EXTRACT = "CIVIL_STATUS_EXTRACT"
LICENCE_ATTESTATION = "LICENCE_ATTESTATION"
JUDICIAL_DELIVERY_CERTIFICATE = "JUDICIAL_DELIVERY_CERTIFICATE"
TITLES = {
    REGISTRATION_CERTIFICATE: N_("Consular registration certificate"),
    CIVIL_STATUS_EXTRACT: N_("Civil-status extract"),
    LICENCE_ATTESTATION: N_("Driving-licence authentication attestation"),
    JUDICIAL_DELIVERY_CERTIFICATE: N_("Certificate of delivery of a judicial document"),
}
SEX = {"M": N_("Male"), "F": N_("Female")}
ACT_KINDS = {"BIRTH": N_("Birth"), "MARRIAGE": N_("Marriage"), "DEATH": N_("Death"),
             "NAISSANCE": N_("Birth"), "MARIAGE": N_("Marriage"), "DECES": N_("Death")}
JUDICIAL_OUTCOMES = {"SERVED": N_("Served on the addressee"), "REFUSED": N_("Refused by the addressee"),
                     "NOT_FOUND": N_("Addressee not found at the known address"),
                     "ADDRESSEE_UNKNOWN": N_("Addressee not registered with any post")}
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")


@dataclass(frozen=True)
class Line:
    """One printed line: a label (msgid), its value, and how the value is written: "text" (as is), "date"
    (an ISO date, printed in the document's language), "label" (a msgid, translated), "id" (left to right)."""

    label: str
    value: str
    form: str = "text"

    @property
    def arabic(self) -> bool:
        return self.form == "text" and bool(_ARABIC.search(self.value))


@dataclass(frozen=True)
class Printable:
    """A document ready to render and record."""

    kind: str
    reference: str                   # what it is about: a registration id or a case reference
    holder: str                      # the holder as the public verification names them (initial and family name)
    post_code: str | None
    post_name: str
    post_city: str
    citizen_id: int | None
    case_id: int | None
    intro: str                       # a msgid with %(post)s, %(city)s
    lines: list[Line] = field(default_factory=list)
    source: str | None = None        # a msgid: where the printed content comes from, and who signed it
    source_values: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.kind]


def _post(post: Post | None) -> tuple[str | None, str, str]:
    return (post.code, post.name, post.city) if post is not None else (None, "", "")


def _optional(label: str, value, form: str = "text") -> list[Line]:
    return [Line(label, str(value), form)] if value not in (None, "") else []


def registration_certificate(citizen: Citizen) -> Printable:
    """The attestation d'immatriculation: the post certifies that the citizen is registered with it."""
    if citizen.status != "ACTIVE":
        raise NothingToPrint(f"citizen {citizen.registration_id} is {citizen.status}: a registration certificate is "
                           "issued for an ACTIVE registration only")
    code, name, city = _post(citizen.post)
    address = ", ".join(part for part in (citizen.address_lines.replace("\n", ", ").strip(), citizen.city,
                                          citizen.country) if part)
    lines = [Line(N_("Registration number"), citizen.registration_id, "id"),
             Line(N_("Family name"), citizen.family_name_latin), Line(N_("Given names"), citizen.given_name_latin),
             Line(N_("Family name in Arabic"), citizen.family_name_arabic),
             Line(N_("Given names in Arabic"), citizen.given_name_arabic),
             Line(N_("Date of birth"), citizen.birth_date.isoformat(), "date"),
             *_optional(N_("Place of birth"), citizen.birth_place),
             Line(N_("Sex"), SEX.get(citizen.sex, citizen.sex), "label"),
             *_optional(N_("National identity card (CNIE)"), citizen.cnie, "id"),
             *_optional(N_("Passport number"), citizen.passport_number, "id"),
             Line(N_("Address"), address),
             Line(N_("Registered on"), citizen.registered_at.date().isoformat(), "date")]
    return Printable(REGISTRATION_CERTIFICATE, citizen.registration_id,
                     _full_name(f"{citizen.given_name_latin} {citizen.family_name_latin}"), code, name, city,
                     citizen.id, None,
                     N_("The consular post named below certifies that the person described in this certificate is "
                        "registered in its consular register."), lines)


def for_case(case: Case) -> Printable:
    """The printable form of what `case` holds; NothingToPrint when it holds none (yet)."""
    build = {"CIVIL_STATUS_EXTRACT": _extract, "LICENCE_AUTHENTICATION": _licence,
             "JUDICIAL_DOCUMENT": _judicial}.get(case.service)
    if build is None:
        raise NothingToPrint(f"a {case.service} case holds no document to print")
    return build(case)


def _document(case: Case, kind: str):
    found = [d for d in case.documents if d.kind == kind]
    return parse_trusted(found[-1].content) if found else None


def _find(element, path: str) -> str | None:
    value = element.findtext("/".join(f"{{*}}{step}" for step in path.split("/")))
    return value.strip() if value else None


def _day(value: str | None) -> str | None:
    """An ISO date or date-time, or a JJ/MM/AAAA date, as an ISO date (None when it is neither)."""
    if not value:
        return None
    for parse in (lambda v: dt.date.fromisoformat(v[:10]), lambda v: dt.datetime.strptime(v, "%d/%m/%Y").date()):
        try:
            return parse(value).isoformat()
        except ValueError:
            continue
    return None


def _holder(case: Case) -> str:
    citizen = case.citizen
    return _full_name(f"{citizen.given_name_latin} {citizen.family_name_latin}") if citizen is not None else ""


def _case_printable(case: Case, kind: str, intro: str, lines: list[Line], source: str | None = None,
                    holder: str | None = None, **source_values) -> Printable:
    code, name, city = _post(_post_of(case))
    return Printable(kind, case.reference, _holder(case) if holder is None else holder, code, name, city,
                     case.citizen_id, case.id, intro, lines, source, source_values)


def _post_of(case: Case) -> Post | None:
    from sqlalchemy.orm import object_session
    session = object_session(case)
    return session.get(Post, case.post_code) if session is not None and case.post_code else None


def _extract(case: Case) -> Printable:
    extract = _document(case, "CIVIL_STATUS_EXTRACT")
    if case.status != "ISSUED" or extract is None:
        raise NothingToPrint(f"case {case.reference} is {case.status}: the civil-status register has issued no extract "
                           "to print")
    act_kind = _find(extract, "Acte/Nature") or ""
    lines = [Line(N_("Extract number"), _find(extract, "NumeroExtrait") or "", "id"),
             *_optional(N_("Issued by the register on"), _day(_find(extract, "DateDelivrance")), "date"),
             *_optional(N_("Civil-status office"), _find(extract, "Acte/Bureau"), "id"),
             *_optional(N_("Year of the act"), _find(extract, "Acte/Annee"), "id"),
             *_optional(N_("Act number"), _find(extract, "Acte/NumeroActe"), "id"),
             *_optional(N_("Kind of act"), ACT_KINDS.get(act_kind.upper()), "label"),
             *_optional(N_("Family name"), _find(extract, "Titulaire/NomLatin")),
             *_optional(N_("Given names"), _find(extract, "Titulaire/PrenomLatin")),
             *_optional(N_("Family name in Arabic"), _find(extract, "Titulaire/NomArabe")),
             *_optional(N_("Given names in Arabic"), _find(extract, "Titulaire/PrenomArabe")),
             *_optional(N_("Date of birth"), _day(_find(extract, "Titulaire/DateNaissance")), "date"),
             *[Line(N_("Marginal note"), m.text.strip()) for m in extract.iterfind("{*}Mentions/{*}Mention")
               if m.text and m.text.strip()],
             *_optional(N_("Civil-status officer"), _find(extract, "OfficierEtatCivil")),
             Line(N_("Case reference"), case.reference, "id")]
    given, family = _find(extract, "Titulaire/PrenomLatin") or "", _find(extract, "Titulaire/NomLatin") or ""
    return _case_printable(case, CIVIL_STATUS_EXTRACT,
                           N_("Printed form of the extract that the national civil-status register issued and "
                              "signed; the signed extract is kept with the case."), lines,
                           N_("Signed by the civil-status register (%(partner)s)."),
                           holder=_full_name(f"{given} {family}".strip()), partner="ETAT_CIVIL")


def _licence(case: Case) -> Printable:
    attestation = _document(case, "NARSA_ATTESTATION")
    if case.status != "AUTHENTIC" or attestation is None:
        raise NothingToPrint(f"case {case.reference} is {case.status}: NARSA has attested no licence to print")
    citizen = case.citizen
    lines = [Line(N_("Attestation number"), _find(attestation, "NumeroAttestation") or "", "id"),
             Line(N_("Licence number"), _find(attestation, "NumeroPermis") or case.details.get("number", ""), "id"),
             *_optional(N_("Holder"), _find(attestation, "Titulaire")),
             *([Line(N_("Registration number"), citizen.registration_id, "id"),
                Line(N_("Family name in Arabic"), citizen.family_name_arabic),
                Line(N_("Given names in Arabic"), citizen.given_name_arabic),
                Line(N_("Date of birth"), citizen.birth_date.isoformat(), "date")] if citizen is not None else []),
             Line(N_("Categories"), " ".join(c.text.strip() for c in attestation.iterfind("{*}Categories/{*}Categorie")
                                               if c.text), "id"),
             *_optional(N_("Licence issued on"), _day(_find(attestation, "DateDelivrance")), "date"),
             *_optional(N_("Attestation valid until"), _day(_find(attestation, "ValableJusquAu")), "date"),
             Line(N_("Case reference"), case.reference, "id")]
    return _case_printable(case, LICENCE_ATTESTATION,
                           N_("Printed form of the attestation by which NARSA found this Moroccan driving licence "
                              "authentic; the signed attestation is kept with the case."), lines,
                           N_("Signed by the national road safety agency (%(partner)s)."), partner="NARSA")


def _judicial(case: Case) -> Printable:
    outcome = case.outcome or {}
    if case.status not in JUDICIAL_OUTCOMES or outcome.get("outcome") != case.status:
        raise NothingToPrint(f"case {case.reference} is {case.status}: its delivery is not certified yet")
    details = case.details or {}
    court, addressee = details.get("court") or {}, details.get("addressee") or {}
    lines = [*_optional(N_("Court"), court.get("name")),
             *_optional(N_("Court case number"), details.get("case_number"), "id"),
             *_optional(N_("Kind of document"), details.get("document_type"), "id"),
             *_optional(N_("Justice reference"), case.partner_reference, "id"),
             *_optional(N_("Addressee"), addressee.get("name")),
             *([Line(N_("Registration number"), case.citizen.registration_id, "id")] if case.citizen else []),
             Line(N_("Outcome"), JUDICIAL_OUTCOMES[case.status], "label"),
             *_optional(N_("Date of the outcome"), _day(outcome.get("date")), "date"),
             *_optional(N_("Deemed served on"), _day(outcome.get("deemed_served_on")), "date"),
             *_optional(N_("Remark of the post"), outcome.get("note")),
             Line(N_("Case reference"), case.reference, "id")]
    return _case_printable(case, JUDICIAL_DELIVERY_CERTIFICATE,
                           N_("The registry certifies the outcome below of the judicial document that the Ministry "
                              "of Justice sent for delivery; the signed certificate went to the Ministry through the "
                              "hub."), lines, holder=_full_name(addressee.get("name") or ""))

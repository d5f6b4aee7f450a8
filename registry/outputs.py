"""JSON shapes of registry objects, shared by every view, and what each viewer may see of them.

Lists are masked for every role (`mask`): identity fields keep only what tells records apart (the
last two characters of an identifier, a birth year, an e-mail's domain, given names as initials;
family names stay so that a list is usable), and health data is left out.
Single records are shown whole to the roles allowed to read them, except health data, which only an
administrator and the consular agents of the case's post see (they collected the cause of death from
the death certificate and answer for what went to SANTE; a supervisor follows cases, not health data).

Health data (`is_health_data`) is the cause of death (`cause_code`, `cause_text`) and what the health
authority says of it: SANTE's reason and reason text in a repatriation's clearances, and its clearance
document (CLEARANCE_SANTE); the decision itself (granted or refused) stays visible, since the case's
status shows it anyway. Documents are shown only to the roles DOCUMENT_READERS lists for their kind.
"""
from __future__ import annotations

from hub.access.tokens import ADMINISTRATOR, CONSULAR_AGENT, Identity
from registry.models import Case, Citizen, Post

WITHHELD = "[withheld]"
HEALTH_FIELDS = {"cause_code", "cause_text"}
HEALTH_AUTHORITY = "SANTE"
HEALTH_AUTHORITY_FIELDS = {"reason", "reason_text"}  # of the health authority's clearance
HEALTH_READERS = (ADMINISTRATOR, CONSULAR_AGENT)
# documents whose content only some roles see; any other kind is shown to every reader of the case.
# Judicial content is confidential, the health clearance health data: the supervisor's oversight needs neither.
DOCUMENT_READERS = {"JUDICIAL_DOCUMENT": (ADMINISTRATOR, CONSULAR_AGENT),
                    f"CLEARANCE_{HEALTH_AUTHORITY}": HEALTH_READERS}


def is_health_data(key: str, parent: str | None) -> bool:
    """Whether the JSON member `key` (inside the object held under `parent`) is health data."""
    return key in HEALTH_FIELDS or (parent == HEALTH_AUTHORITY and key in HEALTH_AUTHORITY_FIELDS)


def _keep_last(value: str, keep: int = 2) -> str:
    return "*" * max(len(value) - keep, 1) + value[-keep:] if len(value) > keep else "*" * len(value)


def _initials(value: str) -> str:
    return " ".join(f"{word[0]}." for word in value.split() if word)


def _full_name(value: str) -> str:
    """"Youssef El Amrani" -> "Y. El Amrani": the first word as an initial, the rest kept."""
    first, _, rest = value.strip().partition(" ")
    return f"{first[:1]}. {rest}".strip() if first else value


def _email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}" if domain else _keep_last(value)


def _date(value: str) -> str:
    return f"{value[:4]}-**-**" if len(value) >= 4 else "****"


def _lines(value):
    if isinstance(value, list):
        return ["***" for _ in value]
    return "***" if value else value


MASKS = {
    "cnie": _keep_last, "passport_number": _keep_last, "previous_passport": _keep_last,
    "pension_number": _keep_last, "phone": lambda v: v[:3] + _keep_last(v[3:]),
    "email": _email, "birth_date": _date, "died_on": _date, "lines": _lines, "address_lines": _lines,
    "given_name_latin": _initials, "given_name_arabic": _initials,
}
PERSON_NAMES = {"addressee"}  # objects whose `name` is a person's full name (a court's name is not masked)


def mask(value, _parent: str | None = None):
    """A copy of a JSON value with identity fields masked and health data left out, at any depth."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            masker = MASKS.get(key) or (_full_name if key == "name" and _parent in PERSON_NAMES else None)
            if is_health_data(key, _parent):
                out[key] = WITHHELD
            elif masker is not None and isinstance(item, (str, list)) and item:
                out[key] = masker(item)
            else:
                out[key] = mask(item, key)
        return out
    if isinstance(value, list):
        return [mask(item, _parent) for item in value]
    return value


def _without_health_data(value, _parent: str | None = None):
    if isinstance(value, dict):
        return {k: (WITHHELD if is_health_data(k, _parent) else _without_health_data(v, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_health_data(v, _parent) for v in value]
    return value


def _may_read_document(kind: str, role: str | None) -> bool:
    readers = DOCUMENT_READERS.get(kind)
    return readers is None or role in readers


def post_out(p: Post) -> dict:
    """A post; a closed one (`active` false) says when and why."""
    return {"code": p.code, "name": p.name, "kind": p.kind, "country": p.country, "city": p.city,
            "jurisdiction": p.jurisdiction, "languages": [code for code in (p.languages or "").split(";") if code],
            "time_zone": p.time_zone, "active": p.active,
            "closed_at": p.closed_at.isoformat() if p.closed_at else None, "closed_reason": p.closed_reason}


def citizen_out(c: Citizen, *, masked: bool = False) -> dict:
    out = {"registration_id": c.registration_id, "status": c.status, "post_code": c.post_code,
           "given_name_latin": c.given_name_latin, "family_name_latin": c.family_name_latin,
           "given_name_arabic": c.given_name_arabic, "family_name_arabic": c.family_name_arabic,
           "birth_date": c.birth_date.isoformat(), "birth_place": c.birth_place, "sex": c.sex, "cnie": c.cnie,
           "passport_number": c.passport_number, "country": c.country, "city": c.city,
           "address_lines": c.address_lines, "phone": c.phone, "email": c.email,
           "registered_at": c.registered_at.isoformat(),
           "died_on": c.died_on.isoformat() if c.died_on else None}
    return mask(out) if masked else out


def case_out(c: Case, *, full: bool = False, viewer: Identity | None = None) -> dict:
    """A case. Without `full` (lists): masked for everyone. With `full`: whole for `viewer`, except
    what its role may not see (health data, restricted documents); without a viewer, neither is shown."""
    out = {"reference": c.reference, "service": c.service, "status": c.status, "post_code": c.post_code,
           "registration_id": c.citizen.registration_id if c.citizen else None, "details": c.details,
           "outcome": c.outcome, "request_message_id": c.request_message_id, "partner_reference": c.partner_reference,
           "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}
    if not full:
        return {**out, "details": mask(c.details), "outcome": mask(c.outcome)}
    role = viewer.role if viewer is not None else None
    if role not in HEALTH_READERS:
        out["details"], out["outcome"] = _without_health_data(c.details), _without_health_data(c.outcome)
    out["history"] = [{"at": e.at.isoformat(), "status": e.status, "actor": e.actor, "note": e.note}
                      for e in c.history]
    out["documents"] = [{"kind": d.kind, "source_message_id": d.source_message_id,
                         "received_at": d.received_at.isoformat(),
                         "xml": d.content.decode() if _may_read_document(d.kind, role) else WITHHELD}
                        for d in c.documents]
    return out

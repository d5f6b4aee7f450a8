"""JSON shapes of registry objects, shared by every view."""
from __future__ import annotations

from registry.models import Case, Citizen, Post


def post_out(p: Post) -> dict:
    return {"code": p.code, "name": p.name, "kind": p.kind, "country": p.country, "city": p.city,
            "jurisdiction": p.jurisdiction}


def citizen_out(c: Citizen) -> dict:
    return {"registration_id": c.registration_id, "status": c.status, "post_code": c.post_code,
            "given_name_latin": c.given_name_latin, "family_name_latin": c.family_name_latin,
            "given_name_arabic": c.given_name_arabic, "family_name_arabic": c.family_name_arabic,
            "birth_date": c.birth_date.isoformat(), "birth_place": c.birth_place, "sex": c.sex, "cnie": c.cnie,
            "passport_number": c.passport_number, "country": c.country, "city": c.city,
            "address_lines": c.address_lines, "phone": c.phone, "email": c.email,
            "registered_at": c.registered_at.isoformat()}


def case_out(c: Case, *, full: bool = False) -> dict:
    out = {"reference": c.reference, "service": c.service, "status": c.status, "post_code": c.post_code,
           "registration_id": c.citizen.registration_id if c.citizen else None, "details": c.details,
           "outcome": c.outcome, "request_message_id": c.request_message_id, "partner_reference": c.partner_reference,
           "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}
    if full:
        out["history"] = [{"at": e.at.isoformat(), "status": e.status, "actor": e.actor, "note": e.note}
                          for e in c.history]
        out["documents"] = [{"kind": d.kind, "source_message_id": d.source_message_id,
                             "received_at": d.received_at.isoformat(), "xml": d.content.decode()}
                            for d in c.documents]
    return out

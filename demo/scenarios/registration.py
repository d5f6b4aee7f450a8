"""Consular registration: DGSN checks the identity by the CNIE's last digit (0-6 MATCH -> ACTIVE,
7-8 MISMATCH and 9 UNKNOWN -> REJECTED; no CNIE: UNKNOWN). New people are registered with CNIEs
ending in 3, 8 and 9 in turn, and every fourth case updates an already registered citizen's address
abroad, which DGSN is also notified of (and a RENEWAL in between), so every outcome and both kinds of
delivery appear (from 4 cases on)."""
from __future__ import annotations

from demo.context import PEOPLE

SERVICE = "CONSULAR_REGISTRATION"
NEW_LAST_DIGITS = [3, 8, 9]
CITIES = {"FR": "Paris", "ES": "Madrid", "IT": "Milano", "BE": "Bruxelles", "NL": "Amsterdam", "DE": "Düsseldorf"}


def start(api, ctx, count: int) -> None:
    for i in range(count):
        if i % 4 == 3 and ctx.citizens:
            citizen = ctx.citizens[i % len(ctx.citizens)]
            body = _update(citizen, i) if i % 8 == 3 else \
                {"kind": "RENEWAL", "registration_id": citizen["registration_id"]}
            post = citizen["post_code"]
        else:
            body = _new(ctx, i)
            post = body["post_code"]
        case = ctx.agent(post).post("/api/v1/cases/consular-registration", json=body).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])


def _new(ctx, i: int) -> dict:
    given, family, given_ar, family_ar, sex = PEOPLE[(i + 5) % len(PEOPLE)]
    post = ctx.posts[i % len(ctx.posts)]
    digit = NEW_LAST_DIGITS[(i - i // 4) % len(NEW_LAST_DIGITS)]
    return {"kind": "NEW", "post_code": post,
            "person": {"given_name_latin": given, "family_name_latin": family, "given_name_arabic": given_ar,
                       "family_name_arabic": family_ar, "birth_date": f"{1960 + i % 40}-{1 + i % 12:02d}-15",
                       "sex": sex, "cnie": f"GM{200000 + i * 10 + digit:06d}"[:8]},
            "address": {"country": post[:2], "city": CITIES.get(post[:2], "Centre"),
                        "lines": [f"{10 + i} rue de la Gare"]}}


def _update(citizen: dict, i: int) -> dict:
    country = citizen["country"]
    return {"kind": "UPDATE", "registration_id": citizen["registration_id"],
            "address": {"country": country, "city": CITIES.get(country, "Centre"),
                        "lines": [f"{i} avenue de la Liberté", "Appartement 2"], "postal_code": f"{1000 + i}"}}

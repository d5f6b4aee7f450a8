"""Transcriptions of births and deaths registered abroad: ETAT_CIVIL acknowledges each at once, then
calls back TRANSCRIBED (with the Moroccan act), or REJECTED (PIECES_MANQUANTES) when the foreign act's
number ends in 9. The demo alternates a child's birth and a parent's death; the second case is rejected."""
from __future__ import annotations

SERVICE = "TRANSCRIPTION"
LAST_DIGITS = [2, 9, 5, 1, 8, 9, 0, 4]
CITY = {"FR": "Paris", "ES": "Madrid", "IT": "Milano", "BE": "Bruxelles", "NL": "Amsterdam", "DE": "Düsseldorf"}
AUTHORITY = {"FR": "Mairie", "ES": "Registro Civil", "IT": "Ufficio di Stato Civile", "BE": "Commune",
             "NL": "Gemeente", "DE": "Standesamt"}


def _names(given: str, given_ar: str, citizen: dict) -> dict:
    return {"given_name_latin": given, "family_name_latin": citizen["family_name_latin"],
            "given_name_arabic": given_ar, "family_name_arabic": citizen["family_name_arabic"]}


def start(api, ctx, count: int) -> None:
    applicants = ctx.citizens[: max(1, len(ctx.citizens) // 2)]
    for i in range(count):
        citizen = applicants[-(i % len(applicants)) - 1]
        country = citizen["country"] if citizen["country"] in CITY else "FR"
        birth = i % 2 == 0
        day = f"2026-{1 + i % 10:02d}-{1 + i % 27:02d}"
        body = {"registration_id": citizen["registration_id"], "event": "BIRTH" if birth else "DEATH",
                "event_date": day, "event_place": {"country": country, "city": CITY[country]},
                "foreign_act": {"country": country, "authority": f"{AUTHORITY[country]} {CITY[country]}",
                                "number": f"2026/{1000 + i * 13}{LAST_DIGITS[i % len(LAST_DIGITS)]}",
                                "date": day}}
        if birth:
            body["person"] = {**_names("Rayan" if i % 4 == 0 else "Lina", "ريان" if i % 4 == 0 else "لينة", citizen),
                              "sex": "M" if i % 4 == 0 else "F", "birth_date": day}
            parent = {k: citizen[k] for k in ("given_name_latin", "family_name_latin", "given_name_arabic",
                                              "family_name_arabic")}
            body["father" if citizen["sex"] == "M" else "mother"] = parent
        else:  # the applicant's mother, who died abroad
            body["person"] = {**_names("Aicha", "عائشة", citizen), "sex": "F", "birth_date": "1948-05-20"}
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/transcription", json=body).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])

"""Civil-status extracts: ETAT_CIVIL finds every act except those whose number ends in 9 (NOT_FOUND);
the others are ISSUED with the register's signed extract kept with the case. The demo asks for the
applicant's own birth act, a marriage act, and a parent's death act, the second case a missing act."""
from __future__ import annotations

SERVICE = "CIVIL_STATUS_EXTRACT"
OFFICES = ["1441011", "0641013", "1511015", "CONS-FR-PARIS"]
LAST_DIGITS = [4, 9, 1, 6, 2, 9, 3, 0]
KINDS = ["BIRTH", "MARRIAGE", "DEATH"]


def start(api, ctx, count: int) -> None:
    applicants = ctx.citizens[: max(1, len(ctx.citizens) // 2)]
    for i in range(count):
        citizen = applicants[i % len(applicants)]
        kind = KINDS[i % len(KINDS)]
        birth_year = int(citizen["birth_date"][:4])
        year = {"BIRTH": birth_year, "MARRIAGE": birth_year + 25, "DEATH": 2024}[kind]
        body = {"registration_id": citizen["registration_id"],
                "act": {"office": OFFICES[i % len(OFFICES)], "year": min(year, 2026),
                        "number": f"{100 + i * 7}{LAST_DIGITS[i % len(LAST_DIGITS)]}", "kind": kind}}
        if kind == "DEATH":  # the death act of the applicant's father
            body["subject"] = {"given_name_latin": "Abdellah", "family_name_latin": citizen["family_name_latin"],
                               "given_name_arabic": "عبد الله", "family_name_arabic": citizen["family_name_arabic"],
                               "birth_date": f"{birth_year - 30}-01-01"}
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/civil-status-extract",
                                                    json=body).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])

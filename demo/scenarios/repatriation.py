"""Repatriation of remains: SANTE refuses infectious causes (ICD-10 A or B), ETAT_CIVIL a commune code
ending in 9, DGSN a seal number ending in 9; the demo's data makes each happen once, the rest authorised.
Some of the deceased drew a pension: their death notice goes to CDG in the next batch."""
from __future__ import annotations

SERVICE = "REPATRIATION"
# (cause code, cause text, commune, seal) — the first is authorised, then one refusal per authority
VARIANTS = [
    ("I21.9", "Infarctus aigu du myocarde", "1411011", "SCL-204518"),
    ("A41.9", "Septicémie", "1411011", "SCL-204520"),
    ("C34.9", "Tumeur maligne du poumon", "0641019", "SCL-204522"),
    ("I64", "Accident vasculaire cérébral", "1411011", "SCL-204529"),
    ("J18.9", "Pneumopathie", "0641013", "SCL-204531"),
]
ENTRY_POINTS = ["CMN", "TNG", "RAK", "TNG-MED", "FEZ", "OUD"]


def start(api, ctx, count: int) -> None:
    for i in range(count):
        citizen = ctx.citizens[-(i + 1)]  # the last registered citizens, away from other scenarios
        cause_code, cause_text, commune, seal = VARIANTS[i % len(VARIANTS)]
        body = {"registration_id": citizen["registration_id"],
                "death": {"date": "2026-11-18", "country": citizen["country"], "city": "Paris" if i % 2 else "Madrid",
                          "cause_code": cause_code, "cause_text": cause_text},
                "burial": {"commune": commune, "commune_name": "Agadir" if commune.startswith("1") else "Fès"},
                "transport": {"entry_point": ENTRY_POINTS[i % len(ENTRY_POINTS)], "arrival_date": "2026-11-25",
                              "carrier": "Royal Air Maroc", "seal_number": seal}}
        if i % 2 == 0:
            body["pension"] = {"pension_number": f"{7000100 + i * 11:07d}"[:-1] + str(i % 9), "fund": "CNRA"}
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/repatriation", json=body).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])

"""Passport applications: DGSN produces the passport (IN_PRODUCTION -> SHIPPED -> AVAILABLE_AT_POST
by callbacks) unless the post's biometric enrolment reference ends in 9 (REJECTED,
ENROLEMENT_INCOMPLET). Every third application has such a reference; as passports become available,
the post hands them over (DELIVERED). Both outcomes appear from 3 cases on."""
from __future__ import annotations

SERVICE = "PASSPORT_APPLICATION"
KINDS = ["FIRST", "RENEWAL", "REPLACEMENT"]


def start(api, ctx, count: int) -> None:
    for i in range(count):
        citizen = ctx.citizens[i % len(ctx.citizens)]
        kind = KINDS[i % len(KINDS)]
        last = 9 if i % 3 == 2 else i % 9
        body = {"registration_id": citizen["registration_id"], "kind": kind,
                "enrolment": {"reference": f"ENR-{citizen['post_code']}-{i:05d}{last}"}}
        if kind == "RENEWAL":
            body["previous_passport"] = f"TK{1000000 + i:07d}"
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/passport-application",
                                                    json=body).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])


def advance(api, ctx) -> None:
    """The posts hand over every passport that is available."""
    cases = api.get("/api/v1/cases", params={"service": SERVICE, "status": "AVAILABLE_AT_POST", "limit": 1000})
    for case in cases.raise_for_status().json():
        ctx.agent(case["post_code"]).post(f"/api/v1/cases/{case['reference']}/handover", json={}).raise_for_status()

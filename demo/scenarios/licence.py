"""Driving-licence authentication: NARSA decides by the licence number's last digit
(0-6 authentic, 7-8 discrepancy, 9 not authentic); the demo's numbers cover all three."""
from __future__ import annotations

SERVICE = "LICENCE_AUTHENTICATION"
LAST_DIGITS = [3, 8, 9, 1, 7, 5, 0, 9, 2, 4]


def start(api, ctx, count: int) -> None:
    for i in range(count):
        citizen = ctx.citizens[i % len(ctx.citizens)]
        number = f"{(i % 60) + 1}/{100000 + i * 37:06d}"[:-1] + str(LAST_DIGITS[i % len(LAST_DIGITS)])
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/licence-authentication", json={
            "registration_id": citizen["registration_id"],
            "licence": {"number": number, "categories": ["B"] if i % 3 else ["A", "B"],
                        "issue_date": f"{2000 + i % 24}-06-15"}}).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])

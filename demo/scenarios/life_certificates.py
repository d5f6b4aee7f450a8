"""Life certificates: the posts issue at least 100 certificates, then the demo sends them to CDG in one
batch (with the death notices of the repatriation scenario). CDG rejects a line whose pension number
ends in 9 (PENSION_INCONNUE) and accepts the others; every tenth number here ends in 9, so both
outcomes appear."""
from __future__ import annotations

SERVICE = "LIFE_CERTIFICATE"
MINIMUM = 100
FUNDS = ["CNRA", "RCAR"]


def pension_number(i: int) -> str:
    """Eight digits, unique per certificate, the last one cycling 0-9 (9: rejected by CDG)."""
    return f"{2023000 + i:07d}{i % 10}"


def start(api, ctx, count: int) -> None:
    # the last `count` citizens die in the repatriation scenario: a deceased citizen has no life certificate
    living = ctx.citizens[:max(len(ctx.citizens) - count, 1)]
    for i in range(max(count, MINIMUM)):
        citizen = living[i % len(living)]
        case = ctx.agent(citizen["post_code"]).post("/api/v1/cases/life-certificate", json={
            "registration_id": citizen["registration_id"], "pension_number": pension_number(i),
            "fund": FUNDS[i % len(FUNDS)]}).raise_for_status().json()
        ctx.opened(SERVICE, case["reference"])


def advance(api, ctx) -> None:
    """What integration staff do on demand: send whatever is ISSUED to CDG now (the daily
    job would do the same), and fetch CDG's acknowledgement file. Death notices from repatriation
    cases may arrive later: sent likewise."""
    issued = api.get("/api/v1/cases", params={"service": SERVICE, "status": "ISSUED", "limit": 1}).json()
    if issued:
        ctx.staff.post("/api/v1/life-certificates/batches").raise_for_status()
    batched = api.get("/api/v1/cases", params={"service": SERVICE, "status": "BATCHED", "limit": 1}).json()
    if batched:  # fetch CDG's acknowledgement now rather than at the next scheduled poll
        ctx.staff.post("/api/v1/partners/CDG/poll").raise_for_status()

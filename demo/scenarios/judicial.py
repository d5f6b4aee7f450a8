"""Judicial documents: Justice starts these exchanges. The JUSTICE sandbox is asked (through its control
API) to send service requests for registered citizens' CNIEs and for one CNIE nobody is registered with
(ADDRESSEE_UNKNOWN, certified at once); as cases reach AT_POST, the post's consular agent records SERVED, REFUSED
and NOT_FOUND in turn, so every outcome appears (from 4 cases on)."""
from __future__ import annotations

import time

import httpx

SERVICE = "JUDICIAL_DOCUMENT"
POST_OUTCOMES = ["SERVED", "REFUSED", "NOT_FOUND"]
UNKNOWN_ADDRESSEE = {"cnie": "ZZ999990", "name": "Destinataire Inconnu"}
DOCUMENT_TYPES = ["CONVOCATION", "JUGEMENT", "NOTIFICATION"]
OPENING_SECONDS = 60


def start(api, ctx, count: int) -> None:
    known = [ctx.citizens[i % len(ctx.citizens)] for i in range(max(count - 1, 0))]
    addressees = [{"cnie": c["cnie"], "name": f"{c['given_name_latin']} {c['family_name_latin']}"}
                  for c in known if c.get("cnie")] + [UNKNOWN_ADDRESSEE]
    for n, document_type in enumerate(DOCUMENT_TYPES):  # a few kinds of act, each its own batch
        batch = addressees[n::len(DOCUMENT_TYPES)]
        if batch:
            httpx.post(f"{ctx.sandbox_url('JUSTICE')}/_sandbox/send-requests", timeout=30,
                       json={"addressees": batch, "document_type": document_type}).raise_for_status()
    # The registry opens the cases as the requests arrive: wait for them, so the demo never sees a partial set.
    deadline = time.monotonic() + OPENING_SECONDS
    while time.monotonic() < deadline:
        cases = _cases(api)
        if len(cases) >= len(addressees):
            break
        time.sleep(0.2)
    for case in sorted(_cases(api), key=lambda c: c["reference"]):
        ctx.opened(SERVICE, case["reference"])


def advance(api, ctx) -> None:
    """The posts record an outcome for every case waiting at a post: by the case's rank among the cases of
    registered addressees, SERVED, REFUSED, NOT_FOUND in turn."""
    cases = _cases(api)
    ranked = sorted(c["reference"] for c in cases if c["registration_id"])  # the addressee is registered
    for case in cases:
        if case["status"] == "AT_POST":
            outcome = POST_OUTCOMES[ranked.index(case["reference"]) % len(POST_OUTCOMES)]
            ctx.agent(case["post_code"]).post(f"/api/v1/cases/{case['reference']}/outcome",
                                              json={"outcome": outcome}).raise_for_status()


def _cases(api) -> list[dict]:
    return api.get("/api/v1/cases", params={"service": SERVICE, "limit": 1000}).raise_for_status().json()

"""One scenario per consular service. Each module defines SERVICE, `start(api, ctx, count)` opening
`count` cases through the hub's HTTP API, and optionally `advance(api, ctx)`, called about every 0.5 s
until every case is final, for what a consular post does later (hand a passport over, record the
outcome of a judicial document, send the CDG batch). The data each one chooses makes every outcome
of its service appear at least once."""
from __future__ import annotations

import importlib

SCENARIOS = [
    "demo.scenarios.registration",
    "demo.scenarios.passport",
    "demo.scenarios.civil_status_extract",
    "demo.scenarios.transcription",
    "demo.scenarios.repatriation",
    "demo.scenarios.licence",
    "demo.scenarios.judicial",
    "demo.scenarios.life_certificates",
]


def load() -> list:
    return [importlib.import_module(name) for name in SCENARIOS]

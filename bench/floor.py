"""The floor, measured by the engine on a scratch database (hub/intake/floor.py says what each step is).

`measure(settings, sample)` assembles a hub in this process on `settings` (its database a scratch one
of the same kind as the benchmark's), migrates it and has the engine time its own steps.
"""
from __future__ import annotations

from typing import Callable

from hub.intake.floor import STEPS  # noqa: F401

NARSA_MAPPING = "narsa/licence-request.to-narsa.xsl"  # the benchmark's messages are licence requests to NARSA


def measure(settings, sample: bytes, *, rounds: int = 5, per_round: int = 100,
            on_step: Callable[[str], None] | None = None) -> dict:
    """Median seconds of each step for `sample` (a signed canonical message); see hub/intake/floor.py."""
    from hub.engine import Hub
    from hub.intake import floor
    hub = Hub(settings)
    try:
        hub.migrate()
        return floor.measure(hub, sample, mapping=NARSA_MAPPING, rounds=rounds, per_round=per_round, on_step=on_step)
    finally:
        hub.close()

"""Case status machines, one per service. A transition not listed here is refused."""
from __future__ import annotations

LICENCE_AUTHENTICATION = "LICENCE_AUTHENTICATION"

# Driving-licence authentication with NARSA (asynchronous: acknowledged, answered by callback).
#   SUBMITTED -> AWAITING_PARTNER -> AUTHENTIC | NOT_AUTHENTIC | DISCREPANCY
#   any non-final -> FAILED when the hub could not deliver the request (dead letter)
MACHINES: dict[str, dict[str, set[str]]] = {
    LICENCE_AUTHENTICATION: {
        "SUBMITTED": {"AWAITING_PARTNER", "FAILED"},
        "AWAITING_PARTNER": {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY", "FAILED"},
        "AUTHENTIC": set(), "NOT_AUTHENTIC": set(), "DISCREPANCY": set(), "FAILED": set(),
    },
}


def is_final(service: str, status: str) -> bool:
    return not MACHINES[service][status]


def final_statuses(service: str) -> set[str]:
    return {s for s, nxt in MACHINES[service].items() if not nxt}


class TransitionRefused(Exception):
    pass


def check_transition(service: str, current: str, new: str) -> None:
    if new not in MACHINES[service].get(current, set()):
        raise TransitionRefused(f"{service} case cannot go from {current} to {new}")

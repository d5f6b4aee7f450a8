"""Case status machines: each service module declares its MACHINE; a transition not listed is refused.

Every non-final status may also move to FAILED (the hub could not deliver the case's message: a dead
letter). FAILED ends the case unless its message is resent and the partner answers late: a service whose
answers can still be taken then declares, as MACHINE["FAILED"], the statuses such an answer may move a
failed case to (registry/services/licence.py: FAILED -> AUTHENTIC | NOT_AUTHENTIC | DISCREPANCY). A service
that declares none keeps FAILED final. Any other status with no successor is final.
"""
from __future__ import annotations

from functools import cache
from hub.errors import TransitionRefused
from registry.catalogue import module_for

FAILED = "FAILED"


@cache
def machine(service: str) -> dict[str, frozenset[str]]:
    declared = module_for(service).MACHINE
    full = {status: frozenset(nxt | {FAILED}) if nxt else frozenset()
            for status, nxt in declared.items() if status != FAILED}
    full[FAILED] = frozenset(declared.get(FAILED, ()))  # the late answers a failed case may still take
    return full


def is_final(service: str, status: str) -> bool:
    """No status may follow (a FAILED case that may still take a late answer is not final here)."""
    return not machine(service)[status]


def final_statuses(service: str) -> set[str]:
    """The statuses a case stays in unless something from outside moves it: those with no successor, and
    FAILED (only a resent message's late answer moves it on)."""
    return {s for s, nxt in machine(service).items() if not nxt} | {FAILED}


def open_statuses(service: str) -> list[str]:
    """The statuses of a case still in progress, in the order the service declares them."""
    finals = final_statuses(service)
    return [s for s in machine(service) if s not in finals]


def resumes_after_failure(service: str) -> frozenset[str]:
    """The statuses a late answer may move a FAILED case of `service` to (empty: FAILED is final)."""
    return machine(service)[FAILED]


def check_transition(service: str, current: str, new: str) -> None:
    if new not in machine(service).get(current, frozenset()):
        raise TransitionRefused(f"{service} case cannot go from {current} to {new}")

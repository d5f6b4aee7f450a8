"""Case status machines: each service module declares its MACHINE; a transition not listed is refused.

Every non-final status may also move to FAILED (the hub could not deliver the case's message: a dead
letter). A status with no successor is final.
"""
from __future__ import annotations

from functools import cache
from hub.errors import TransitionRefused
from registry.catalogue import module_for

FAILED = "FAILED"


@cache
def machine(service: str) -> dict[str, frozenset[str]]:
    declared = module_for(service).MACHINE
    full = {status: frozenset(nxt | {FAILED}) if nxt else frozenset() for status, nxt in declared.items()}
    full[FAILED] = frozenset()
    return full


def is_final(service: str, status: str) -> bool:
    return not machine(service)[status]


def final_statuses(service: str) -> set[str]:
    return {s for s, nxt in machine(service).items() if not nxt}




def check_transition(service: str, current: str, new: str) -> None:
    if new not in machine(service).get(current, frozenset()):
        raise TransitionRefused(f"{service} case cannot go from {current} to {new}")

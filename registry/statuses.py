"""Case status machines: each service module declares its MACHINE; a transition not listed is refused.

Every non-final status may also move to FAILED (the hub could not deliver the case's message: a dead
letter). FAILED ends the case unless its message is resent: a service whose answers can still be taken then
declares, as MACHINE["FAILED"], the statuses such an answer may move a failed case to (registry/services/
licence.py: FAILED -> AUTHENTIC | NOT_AUTHENTIC | DISCREPANCY), and a resend of its dead message takes the
case back to the status it waits in for the answer (`resume_status`: the module's RESUME_STATUS, else its
SENT_STATUS). A service that declares none keeps FAILED final. Any other status with no successor is final.

Besides what partners' answers do (`flow`), people act on cases (registry/case_actions.py), and `machine`
allows those moves too:
    any open status, and FAILED -> CANCELLED     an agent cancels the case (CANCELLED is final); a module's
                                                 CANCELLABLE, when it declares one, narrows where from
    FAILED -> SUBMITTED                          an agent retries a case whose service sends a request
    what the module declares in ACTIONS          e.g. a judicial document nobody was found for, matched by hand
"""
from __future__ import annotations

from functools import cache

from hub.errors import TransitionRefused
from registry.catalogue import module_for

FAILED = "FAILED"
CANCELLED = "CANCELLED"
SUBMITTED = "SUBMITTED"


@cache
def flow(service: str) -> dict[str, frozenset[str]]:
    """The moves the case's own course makes: the declared machine, FAILED after any open status, and from
    FAILED the late answers (and the wait again after a resend) the service declares."""
    declared = module_for(service).MACHINE
    full = {status: frozenset(nxt | {FAILED}) if nxt else frozenset()
            for status, nxt in declared.items() if status != FAILED}
    late = frozenset(declared.get(FAILED, ()))
    resume = resume_status(service)
    full[FAILED] = late | {resume} if resume else late  # the late answers a failed case may still take
    full[CANCELLED] = frozenset()
    return full


@cache
def machine(service: str) -> dict[str, frozenset[str]]:
    """Every move a case of `service` may make: its flow and what people do to it (see the module's doc)."""
    module = module_for(service)
    full = dict(flow(service))
    cancellable_from = getattr(module, "CANCELLABLE", None)  # a service may narrow it (what a partner owns)
    for status, nxt in full.items():
        if (nxt or status == FAILED) and (cancellable_from is None or status in cancellable_from):
            full[status] = nxt | {CANCELLED}
    if retryable(service):
        full[FAILED] = full[FAILED] | {SUBMITTED}
    for status, nxt in getattr(module, "ACTIONS", {}).items():
        full[status] = full.get(status, frozenset()) | frozenset(nxt)
    return full


def retryable(service: str) -> bool:
    """A FAILED case of this service can be tried again: its service sends a request of its own."""
    return hasattr(module_for(service), "build_request")


def resume_status(service: str) -> str | None:
    """The status a FAILED case of `service` waits in again once its dead message is resent; None when FAILED
    is final (the service takes no late answer)."""
    module = module_for(service)
    if not module.MACHINE.get(FAILED):
        return None
    return getattr(module, "RESUME_STATUS", None) or getattr(module, "SENT_STATUS", None)


def is_final(service: str, status: str) -> bool:
    """No status may follow in the case's course (a FAILED case that may still take a late answer is not final
    here; people's actions, such as a cancel, are not counted)."""
    return not flow(service)[status]


def final_statuses(service: str) -> set[str]:
    """The statuses a case stays in unless something from outside moves it: those with no successor, and
    FAILED (only a resent message's late answer, or a retry, moves it on)."""
    return {s for s, nxt in flow(service).items() if not nxt} | {FAILED}


def open_statuses(service: str) -> list[str]:
    """The statuses of a case still in progress, in the order the service declares them."""
    finals = final_statuses(service)
    return [s for s in flow(service) if s not in finals]


def cancellable(service: str, status: str) -> bool:
    """An agent may cancel a case in `status`: one still in progress, or FAILED (where its service allows)."""
    return CANCELLED in machine(service).get(status, frozenset())


def resumes_after_failure(service: str) -> frozenset[str]:
    """The statuses a late answer may move a FAILED case of `service` to (empty: FAILED is final)."""
    return frozenset(module_for(service).MACHINE.get(FAILED, ()))


def check_transition(service: str, current: str, new: str) -> None:
    if new not in machine(service).get(current, frozenset()):
        raise TransitionRefused(f"{service} case cannot go from {current} to {new}")

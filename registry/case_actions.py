"""What people do to a case besides their service's own steps: cancel it, retry a FAILED one, hand it to another
post, match a judicial document nobody was found for to a citizen. Each is audited with its actor and leaves a row
in the case's history (sealed like the others, registry/history.py); a refused action changes nothing.

    POST /api/v1/cases/{reference}/cancel     {"reason"}                   an open or FAILED case -> CANCELLED
    POST /api/v1/cases/{reference}/retry                                    a FAILED case -> SUBMITTED, sent again
    POST /api/v1/cases/{reference}/reassign   {"post_code", "reason"}      an open case moves to another post
    POST /api/v1/cases/{reference}/match      {"registration_id", "note"}  ADDRESSEE_UNKNOWN -> AT_POST

Cancel: CANCELLED is final in every service (registry/statuses.py); a final case cannot be cancelled (409), nor a
judicial document (the court's) or a life certificate CDG holds in a batch (their modules' CANCELLABLE). No
partner's format carries a cancellation (schemas/partners, mappings/): the partner is not told, and an answer
it sends later finds the case final and changes nothing (its message stays in the hub's records).

Retry: a new attempt (`Case.attempt`), its request under a new message id (REGISTRY-<reference>-R2, ...), so the
hub and the partner take it as a new message; only services whose case sends a request of its own (a CDG batch's
cases wait for the next batch, a judicial document is Justice's to send again). Resending the dead message
itself (the console's dead letters) is the other way back, which keeps the message id.

Reassign: cases belong to posts, not to agents (an agent acts on their post's cases, hub/access/tokens.py), so
"reassigning" a case hands it to another post: the citizen moved, or a judicial document is served where the
addressee now lives. Only an open case, to an open post; the answers still reach it (they find a case by its
reference, never by its post).

Match: a judicial document whose addressee no active citizen's CNIE matched was certified ADDRESSEE_UNKNOWN to
Justice at once; an agent who finds the addressee (the summons brought to the post, a CNIE renewed since) matches
it to the citizen, which reopens it AT_POST at the citizen's post. The post then records the outcome as for any
judicial document, and a second certificate (REGISTRY-<reference>-CERT-R2) tells Justice the real outcome. A
consular agent matches only to a citizen of their own post.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from sqlalchemy import select

from hub.access.dependencies import allowed
from hub.access.tokens import Identity
from hub.errors import ActionRefused, BadTarget, Forbidden
from registry import audit, citizens, names, service
from registry.services import registration
from registry.inputs import POST_CODE, REGISTRATION_ID, StrictIn, Text
from registry.models import Case, Citizen, Post
from registry.outputs import case_out
from registry.statuses import CANCELLED, FAILED, SUBMITTED, cancellable, open_statuses, retryable

CASE_CANCELLED = "CASE_CANCELLED"
CASE_RETRIED = "CASE_RETRIED"
CASE_REASSIGNED = "CASE_REASSIGNED"
ADDRESSEE_MATCHED = "ADDRESSEE_MATCHED"
MATCHABLE = ("JUDICIAL_DOCUMENT", "ADDRESSEE_UNKNOWN")  # (service, status) a match reopens


def cancel(hub, session, case: Case, *, reason: str, identity: Identity) -> None:
    identity.check_post(case.post_code, doing=f"cancelling case {case.reference}")
    if not cancellable(case.service, case.status):
        if case.status in open_statuses(case.service) or case.status == FAILED:
            raise ActionRefused(f"a {case.service} case in {case.status} is not cancelled by a post (its partner "
                                "holds it: see docs/services.md)")
        raise ActionRefused(f"{case.reference} is {case.status}, which is final: only an open or FAILED case can "
                            "be cancelled")
    service.move_case(session, case=case, status=CANCELLED, actor=identity.case_actor, action=True,
                      note=f"cancelled: {reason}")
    if (case.service == registration.SERVICE and case.details.get("kind") == "NEW" and case.citizen is not None
            and case.citizen.post_code == case.post_code):  # a citizen transferred since is the other post's
        citizens.registration_cancelled(session, case.citizen, case_reference=case.reference, reason=reason,
                                        actor=identity.actor)
    audit.record(hub, session, identity, CASE_CANCELLED, case.reference, reason)


def retry(hub, session, case: Case, *, identity: Identity) -> None:
    identity.check_post(case.post_code, doing=f"retrying case {case.reference}")
    if case.status != FAILED:
        raise ActionRefused(f"{case.reference} is {case.status}: only a FAILED case is retried")
    if not retryable(case.service):
        raise ActionRefused(f"a {case.service} case sends no request of its own to retry")
    citizens.check_may_open(case.citizen, case.service, case.details)  # a death recorded since: not sent again
    case.attempt = (case.attempt or 1) + 1
    service.move_case(session, case=case, status=SUBMITTED, actor=identity.case_actor, action=True,
                      note=f"retried: attempt {case.attempt}")
    audit.record(hub, session, identity, CASE_RETRIED, case.reference, f"attempt {case.attempt}")


def reassign(hub, session, case: Case, *, post_code: str, reason: str, identity: Identity) -> None:
    identity.check_post(case.post_code, doing=f"reassigning case {case.reference}")
    if case.status not in open_statuses(case.service):
        raise ActionRefused(f"{case.reference} is {case.status}: only an open case is handed to another post")
    post = session.get(Post, post_code)
    if post is None or not post.active:
        raise BadTarget(f"post_code: {post_code} is {'closed' if post is not None else 'no consular post'}")
    if post.code == case.post_code:
        raise BadTarget(f"post_code: {case.reference} is at {post.code} already")
    before, case.post_code = case.post_code, post.code
    service.note_case(session, case=case, actor=identity.case_actor,
                      note=f"reassigned from {before or 'no post'} to {post.code}: {reason}")
    audit.record(hub, session, identity, CASE_REASSIGNED, case.reference, f"{before} -> {post.code}: {reason}")


def match_addressee(hub, session, case: Case, *, registration_id: str, note: str, identity: Identity) -> None:
    if case.post_code is not None:  # another post's case: refused before anything about it is said
        identity.check_post(case.post_code, doing=f"matching case {case.reference}")
    if (case.service, case.status) != MATCHABLE:
        raise ActionRefused(f"{case.reference} is a {case.service} case in {case.status}: only a judicial document "
                            "whose addressee was not found (ADDRESSEE_UNKNOWN) is matched by hand")
    citizen = session.scalars(select(Citizen).where(Citizen.registration_id == registration_id)).first()
    if citizen is not None:  # another post's citizen: refused before anything about them is said
        identity.check_post(citizen.post_code, doing=f"matching {case.reference} to {registration_id}")
    if citizen is None or citizen.status != "ACTIVE":
        raise BadTarget(f"registration_id: {registration_id} is not an active citizen")
    addressee = (case.details.get("addressee") or {}).get("name") or ""
    if identity.post_scope is not None and not _same_person(addressee, citizen):
        raise Forbidden(f"matching {case.reference} to {registration_id}: a consular agent matches a judicial "
                        "document only to a citizen who bears the addressee's name (Latin or Arabic, in any order); "
                        "an administrator of the consular directorate matches it otherwise")
    case.citizen_id, case.post_code = citizen.id, citizen.post_code
    case.attempt = (case.attempt or 1) + 1  # the next certificate is a new message (judicial.py)
    case.outcome = {"previous": case.outcome}  # the post's outcome replaces it
    service.move_case(session, case=case, status="AT_POST", actor=identity.case_actor, action=True,
                      note=f"addressee matched by hand to {registration_id} at {citizen.post_code}"
                           + (f": {note}" if note else ""))
    audit.record(hub, session, identity, ADDRESSEE_MATCHED, case.reference,
                 f"{registration_id} at {citizen.post_code}" + (f": {note}" if note else ""))


def _same_person(addressee: str, citizen: Citizen) -> bool:
    """Whether the addressee's name is the citizen's, in either script, whatever its spelling or word order
    (registry/names.py): what lets a post's agent take a document nobody else's CNIE matched."""
    wanted = set(names.tokens(addressee))
    return bool(wanted) and wanted in ({*names.tokens(citizen.given_name_latin, citizen.family_name_latin)},
                                       {*names.tokens(citizen.given_name_arabic, citizen.family_name_arabic)})


# -- HTTP -----------------------------------------------------------------------------------------------------

class CancelIn(StrictIn):
    reason: Text = Field(min_length=3, max_length=200, description="Why the case is cancelled (kept in its history)")


class ReassignIn(StrictIn):
    post_code: Text = Field(pattern=POST_CODE, description="The open consular post taking the case")
    reason: Text = Field(min_length=3, max_length=200)


class MatchIn(StrictIn):
    registration_id: Text = Field(pattern=REGISTRATION_ID, description="The active citizen who is the addressee")
    note: Text = Field("", max_length=200, description="How the addressee was found (kept in the history)")


router = APIRouter(prefix="/api/v1", tags=["cases"])


async def _act(request: Request, reference: str, identity: Identity, do) -> dict:
    """Run `do(hub, session, case)` on the locked case in one transaction, then what it returns to run after the
    commit (`fn(registry, reference)`: sending a retried request); answers the case as it is then."""
    registry = request.app.state.registry

    def work():
        with registry.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            then = do(registry.hub, session, case)
        if then is not None:
            then(registry, reference)
        with registry.hub.sessions() as session:
            return case_out(service.get_case(session, reference=reference), full=True, viewer=identity)
    return await run_in_threadpool(work)


@router.post("/cases/{reference}/cancel", summary="Cancel an open or FAILED case (reason required; final)")
async def cancel_case(reference: str, body: CancelIn, request: Request,
                      identity: Identity = Depends(allowed("registry:act"))):
    return await _act(request, reference, identity,
                      lambda hub, session, case: cancel(hub, session, case, reason=body.reason, identity=identity))


@router.post("/cases/{reference}/retry", summary="Try a FAILED case again: its request goes under a new message id")
async def retry_case(reference: str, request: Request, identity: Identity = Depends(allowed("registry:act"))):
    def do(hub, session, case):
        retry(hub, session, case, identity=identity)
        return lambda registry, ref: registry.submit_case(ref)
    return await _act(request, reference, identity, do)


@router.post("/cases/{reference}/reassign", summary="Hand an open case to another consular post")
async def reassign_case(reference: str, body: ReassignIn, request: Request,
                        identity: Identity = Depends(allowed("registry:act"))):
    return await _act(request, reference, identity,
                      lambda hub, session, case: reassign(hub, session, case, post_code=body.post_code,
                                                          reason=body.reason, identity=identity))


@router.post("/cases/{reference}/match", summary="Match a judicial document whose addressee was not found to a "
                                                 "citizen: it reopens at the citizen's post")
async def match_case(reference: str, body: MatchIn, request: Request,
                     identity: Identity = Depends(allowed("registry:act"))):
    return await _act(request, reference, identity,
                      lambda hub, session, case: match_addressee(hub, session, case,
                                                                 registration_id=body.registration_id,
                                                                 note=body.note, identity=identity))

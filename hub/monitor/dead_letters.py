"""Dead letters: deliveries the hub gave up on (state DEAD), grouped by partner and by the cause of their failure,
and their resending once the cause is fixed (/monitor/dead-letters; GET /api/v1/monitor/dead-letters and
POST /api/v1/monitor/dead-letters/resend for other tools, from the same functions).

A group is (partner, reason pattern): the delivery's last_error with what differs from one message to the next
taken out (`pattern`: ids, numbers of four digits or more, dates and times, decimals, UUIDs and long hex strings
become '#'), so that "partner answered 400: case LIC-2026-000123 unknown" and "... LIC-2026-000124 unknown"
are one group while "partner answered 503" is another (short numbers such as HTTP statuses are kept). Each group
shows one raw reason as an example, its count and the first and last failure (the time of the delivery's last
attempt).

Resending goes through hub.delivery.operations.resend, message by message: each message's dead deliveries go
back in the outbox and each message gets its own RESEND entry in the audit log, in the same transaction as its
resend. One entry per message rather than one for the group: "who resent this message, and when" is then
answered by the audit log's subject (the message id), as for a resend through the API or the command line, and
a group resend that stops half way (a purged payload, the database going away) leaves exactly the entries of
what was done. A message with dead deliveries to two partners has both resent (resend works per message).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from hub.access.tokens import Identity
from hub.delivery.operations import resend
from hub.errors import InputError, NotFound, UnfitCharacter
from hub.monitor.partners import circuit_of, recent_checks
from hub.access.dependencies import allowed
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from hub.store.models import Delivery, DeliveryState, Message
from hub.xml.text import unfit_character

router = APIRouter(prefix="/monitor", include_in_schema=False)
api = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])

SCAN_LIMIT = 20_000          # dead deliveries read at most for the grouping (newest first); more is said
RESEND_LIMIT = 1_000         # messages resent at most by one group resend (press again for the rest)
MEMBERS_SHOWN = 200          # messages listed on a group's page
KEY = re.compile(r"^[0-9a-f]{16}$")

_VARYING = [re.compile(p) for p in (
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",   # UUIDs
    r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}\b",                                          # digests, long hex
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?",  # dates, times
    r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b",                                         # clock times
    r"\d+[.,]\d+",                                                                       # decimals
    r"\d{4,}",                                                                           # long numbers
)]
_REPEATS = re.compile(r"#(?:[-_/.:]?#)+")


def pattern(reason: str | None) -> str:
    """The cause in `reason` with what varies between messages taken out (see the module's doc)."""
    text = " ".join((reason or "").split())
    for varying in _VARYING:
        text = varying.sub("#", text)
    return _REPEATS.sub("#", text)[:300]


def group_key(partner: str, reason_pattern: str) -> str:
    return hashlib.sha256(f"{partner}\n{reason_pattern}".encode()).hexdigest()[:16]


@dataclass
class DeadLetter:
    message_id: str
    sender: str
    type: str
    correlation_id: str
    partner: str
    reason: str
    failed_at: dt.datetime
    attempts: int


@dataclass
class Group:
    key: str
    partner: str
    pattern: str
    example: str
    count: int = 0
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None
    members: list[DeadLetter] = field(default_factory=list)

    def as_dict(self, *, members: int = 0) -> dict:
        return {"key": self.key, "partner": self.partner, "reason": self.pattern, "example": self.example,
                "count": self.count, "first_at": _iso(self.first_at), "last_at": _iso(self.last_at),
                "message_ids": [m.message_id for m in self.members[:members]]}


@dataclass
class DeadLetters:
    groups: list[Group]
    total: int
    truncated: bool   # more than SCAN_LIMIT dead deliveries: the oldest were not read


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def dead_letters(hub, *, partner: str | None = None) -> DeadLetters:
    """The dead deliveries (of `partner`), grouped; groups by size, then by the newest failure."""
    query = (select(Delivery.partner, Delivery.last_error, Delivery.next_attempt_at, Delivery.attempts,
                    Message.message_id, Message.sender, Message.type, Message.correlation_id)
             .join(Message, Message.id == Delivery.message_pk)
             .where(Delivery.state == DeliveryState.DEAD).order_by(Delivery.id.desc()).limit(SCAN_LIMIT + 1))
    if partner:
        query = query.where(Delivery.partner == partner)
    with hub.sessions() as session:
        rows = session.execute(query).all()
    truncated = len(rows) > SCAN_LIMIT
    groups: dict[str, Group] = {}
    for row in reversed(rows[:SCAN_LIMIT]):  # oldest first: each group's members in the order they died
        reason = row.last_error or ""
        shape = pattern(reason)
        key = group_key(row.partner, shape)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key, row.partner, shape, reason)
        letter = DeadLetter(row.message_id, row.sender, row.type, row.correlation_id, row.partner, reason,
                            row.next_attempt_at, row.attempts)
        group.members.append(letter)
        group.count += 1
        group.first_at = min(group.first_at or letter.failed_at, letter.failed_at)
        group.last_at = max(group.last_at or letter.failed_at, letter.failed_at)
        group.example = reason  # the newest raw reason
    ordered = sorted(groups.values(), key=lambda g: (-g.count, -(g.last_at.timestamp() if g.last_at else 0)))
    return DeadLetters(ordered, min(len(rows), SCAN_LIMIT), truncated)


def find_group(hub, partner: str, key: str) -> Group:
    """The group `key` of `partner` as it is now; NotFound when it has no dead letter left."""
    for group in dead_letters(hub, partner=partner).groups:
        if group.key == key:
            return group
    raise NotFound(f"no dead letters left in group {key} of {partner}: resent already, or never there")


@dataclass
class Resent:
    resent: list[str] = field(default_factory=list)      # message ids put back in the outbox
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (message id, why) not resent
    left: int = 0                                          # members beyond RESEND_LIMIT, for the next press

    def as_dict(self) -> dict:
        return {"resent": len(self.resent), "message_ids": self.resent,
                "skipped": [{"message_id": m, "reason": why} for m, why in self.skipped], "left": self.left}


def resend_messages(hub, messages: list[tuple[str, str]], *, actor: str) -> Resent:
    """Each message's dead deliveries back in the outbox, one audited resend per message (see the module's doc).
    `messages`: (sender, message id) pairs, since an id is unique per sender only."""
    outcome = Resent()
    unique = list(dict.fromkeys(messages))
    outcome.left = max(0, len(unique) - RESEND_LIMIT)
    for sender, message_id in unique[:RESEND_LIMIT]:
        try:
            if resend(hub, message_id, actor=actor, sender=sender):
                outcome.resent.append(message_id)
            else:
                outcome.skipped.append((message_id, "nothing was dead any more"))
        except (InputError, NotFound) as exc:  # PayloadPurged (409): only its hashes remain
            outcome.skipped.append((message_id, str(getattr(exc, "detail", exc))))
    return outcome


def resend_group(hub, partner: str, key: str, *, actor: str) -> Resent:
    group = find_group(hub, partner, key)
    return resend_messages(hub, [(m.sender, m.message_id) for m in group.members], actor=actor)


# -- checks of what a form or a caller sends --------------------------------------------------------------

def checked_text(name: str, value: str) -> str:
    character = unfit_character(value, parameter=True)
    if character:
        raise UnfitCharacter(f"field {name}", character)
    return value.strip()


def checked_partner(hub, value: str) -> str:
    code = checked_text("partner", value).upper()
    if code not in hub.config.parties:
        raise NotFound(f"no partner {code[:20]!r}")
    return code


def checked_key(value: str) -> str:
    if not KEY.match(value):
        raise InputError("group: not a dead-letter group key (16 hexadecimal digits, as the page gives it)")
    return value


# -- pages -----------------------------------------------------------------------------------------------

@router.get("/dead-letters")
def dead_letters_page(request: Request, partner: str | None = Query(None, max_length=20),
                      resent: int | None = Query(None, ge=0, le=RESEND_LIMIT),
                      skipped: int | None = Query(None, ge=0, le=RESEND_LIMIT),
                      left: int | None = Query(None, ge=0, le=10_000_000),
                      seen: Viewer = Depends(viewer("messages:read"))):
    hub = request.app.state.hub
    code = checked_partner(hub, partner) if partner else None
    found = dead_letters(hub, partner=code)
    return render(request, seen, "dead_letters.html", found=found, partner=code, partners=sorted(hub.config.parties),
                  result=_result(resent, skipped, left))


@router.get("/dead-letters/{partner}/{key}")
def dead_letter_group_page(request: Request, partner: str, key: str,
                           resent: int | None = Query(None, ge=0, le=RESEND_LIMIT),
                           skipped: int | None = Query(None, ge=0, le=RESEND_LIMIT),
                           left: int | None = Query(None, ge=0, le=10_000_000),
                           seen: Viewer = Depends(viewer("messages:read"))):
    hub = request.app.state.hub
    code, key = checked_partner(hub, partner), checked_key(key)
    try:
        group = find_group(hub, code, key)
    except NotFound:
        if resent is None:
            raise
        group = None  # all of it resent: the page says so
    state = request.app.state  # is the cause fixed? the partner as it is now, beside the resend button
    return render(request, seen, "dead_letter_group.html", group=group, partner=code, key=key,
                  shown=MEMBERS_SHOWN, result=_result(resent, skipped, left),
                  check=recent_checks(hub, state, [code]).get(code), circuit=circuit_of(state, code))


def _result(resent, skipped, left) -> dict | None:
    if resent is None:
        return None
    return {"resent": resent, "skipped": skipped or 0, "left": left or 0}


def _back(outcome: Resent, path: str) -> RedirectResponse:
    return RedirectResponse(url(path, resent=len(outcome.resent), skipped=len(outcome.skipped) or None,
                                left=outcome.left or None), status_code=303)


@router.post("/dead-letters/resend-group")
async def resend_group_action(request: Request, seen: Viewer = Depends(csrf_checked("messages:resend")),
                              partner: str = Form(..., max_length=20), group: str = Form(..., max_length=16)):
    hub = request.app.state.hub
    code, key = checked_partner(hub, partner), checked_key(group)
    outcome = await run_in_threadpool(resend_group, hub, code, key, actor=seen.identity.actor)
    return _back(outcome, f"/monitor/dead-letters/{code}/{key}")


@router.post("/dead-letters/resend")
async def resend_one_action(request: Request, seen: Viewer = Depends(csrf_checked("messages:resend")),
                            message_id: str = Form(..., min_length=1, max_length=80),
                            sender: str = Form(..., min_length=1, max_length=20),
                            partner: str | None = Form(None, max_length=20),
                            group: str | None = Form(None, max_length=16)):
    hub = request.app.state.hub
    message_id, sender = checked_text("message_id", message_id), checked_text("sender", sender)
    back = "/monitor/dead-letters"
    if partner and group:
        back = f"/monitor/dead-letters/{checked_partner(hub, partner)}/{checked_key(group)}"
    with hub.sessions() as session:
        if session.scalar(select(Message.id).where(Message.message_id == message_id,
                                                   Message.sender == sender)) is None:
            raise NotFound(f"no message {message_id!r} from {sender!r}")
    outcome = await run_in_threadpool(resend_messages, hub, [(sender, message_id)], actor=seen.identity.actor)
    return _back(outcome, back)


# -- the same for other tools ------------------------------------------------------------------------------

class GroupResend(BaseModel):
    partner: str = Field(..., min_length=1, max_length=20, description="The group's partner code")
    group: str = Field(..., pattern=r"^[0-9a-f]{16}$", description="The group's `key`, as listed")


@api.get("/dead-letters", summary="Dead letters grouped by partner and cause",
         responses={404: {"description": "No such partner"}})
def dead_letters_json(request: Request, partner: str | None = Query(None, max_length=20),
                      _identity: Identity = Depends(allowed("messages:read"))):
    """Deliveries the hub gave up on, grouped by partner and by their reason with ids and numbers taken out
    (`reason`; `example` is one raw reason); `message_ids` lists up to 50 of each group, oldest first."""
    hub = request.app.state.hub
    found = dead_letters(hub, partner=checked_partner(hub, partner) if partner else None)
    return {"total": found.total, "truncated": found.truncated,
            "groups": [g.as_dict(members=50) for g in found.groups]}


@api.post("/dead-letters/resend", summary="Put every dead letter of a group back in the outbox",
          responses={404: {"description": "No such partner, or the group has no dead letter left"}})
def resend_group_json(body: GroupResend, request: Request,
                      identity: Identity = Depends(allowed("messages:resend"))):
    """Each message of the group is resent as POST /api/v1/messages/{id}/resend does, with its own RESEND
    entry in the audit log; at most 1,000 per call (`left` says how many remain)."""
    hub = request.app.state.hub
    return resend_group(hub, checked_partner(hub, body.partner), body.group, actor=identity.actor).as_dict()

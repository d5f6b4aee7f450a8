"""Polling transports (SFTP): files a partner left for the hub are taken in like any callback.

For each item a connector's `poll()` yields: intake through the door (`hub.receive(Arrival("sftp", ...))`:
the same checks as every other door, hardened XML, schema, signature, access rules), then `ack()` once the
message is committed, or `nack(reason)` when intake refuses it (SFTP: the file goes to `failed/` with
the reason beside it; the door records the refusal in `refusals`, as for every door).

Each file handled is remembered by (partner, name, sha256). A file seen again is never taken in twice:
an accepted one (a crash came between the commit and the ack) is acked again; a refused one (its move to
`failed/` failed, or the partner put the same bytes back) is set aside again with its first reason, with
no new refusal: a refused (name, digest) is refused once. A file with other bytes is a new file.

A file the connector handled itself (`InboundItem.handled`: set aside as too large or unreadable, or read by a
stream taker) is counted all the same, its refusal recorded in `refusals` like any door's; and the answer says
how many of the files were `streamed` (too large to hold: taken in as messages kept in files).

One file's trouble is that file's: when its ack or nack fails (the partner's server refusing a rename or
a write), or taking it in meets a defect, it stays where it is, counts as `failed`, and the poll goes on
with the next file. A poll fails as a whole when the partner cannot be listed or the connection is lost
(DeliveryError from `poll()`), or when intake asks to try later (TryLater: back-pressure; the files stay
for the next poll).

Every poll is counted in `hub_polls_total{partner,outcome}` (`error` when it failed or a file could not
be handled) and its files in `hub_polled_files_total{partner,outcome}`; the last poll of each partner in
this process is kept in `hub.last_polls` for /readyz (`polling_check`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connectors.base import InboundItem, Poller
from hub.errors import DeliveryError, InputError, TryLater, first_line
from hub.intake.door import Arrival, refused
from hub.metrics import POLLED_FILES, POLLS
from hub.store.db import utcnow
from hub.store.files import sha256_of
from hub.store.models import InboundFile

log = logging.getLogger("hub.intake.polling")
OUTCOMES = ("accepted", "refused", "seen", "failed")
STREAMED = "streamed"  # of the accepted and refused, the files too large to hold, read as streams


@dataclass(frozen=True)
class LastPoll:
    """How the last poll of a partner ended in this process."""
    at: dt.datetime
    ok: bool
    detail: str


def poll_partner(hub, partner: str) -> dict[str, int]:
    """Take in what `partner` left for the hub; returns counts of accepted, refused, already-seen and failed
    files (a failed file stays on the partner's server), and how many of the accepted and refused were
    `streamed` (too large to hold: a streamed batch's acknowledgement). Every file the poll met is counted,
    those the connector handled itself too (set aside as too large or unreadable: refused; read by a stream
    taker). Raises DeliveryError or TryLater when the poll itself fails; either way the outcome is counted and
    kept for /readyz."""
    counts = dict.fromkeys((*OUTCOMES, STREAMED), 0)
    problems: list[str] = []
    try:
        for item in hub.connectors[partner].poll():
            outcome = _take(hub, partner, item, problems) if item.handled is None else _handled(hub, partner, item,
                                                                                                 problems)
            counts[outcome] += 1
            if outcome in ("accepted", "refused") and (item.path is not None or item.streamed):
                counts[STREAMED] += 1
            POLLED_FILES.labels(partner, outcome).inc()
    except Exception as exc:
        _record(hub, partner, ok=False, detail=f"poll failed: {getattr(exc, 'reason', None) or first_line(exc)}")
        raise
    if problems:
        _record(hub, partner, ok=False, detail=f"{len(problems)} file(s) could not be handled: " + "; ".join(problems))
    else:
        _record(hub, partner, ok=True, detail=", ".join(f"{counts[o]} {o}" for o in OUTCOMES))
    return counts


def _take(hub, partner: str, item: InboundItem, problems: list[str]) -> str:
    """One file: taken in (or recognised) and acked, or refused and nacked; its outcome."""
    digest = sha256_of(item.path)[0] if item.path is not None else hashlib.sha256(item.body).hexdigest()
    with hub.sessions() as session:
        seen = session.scalars(select(InboundFile).where(
            InboundFile.partner == partner, InboundFile.name == item.name, InboundFile.digest == digest)).first()
    try:
        if seen is not None and seen.outcome == "ACCEPTED":  # a crash came between the commit and the ack
            item.ack()
            return "seen"
        if seen is not None:  # refused before and still there: set aside again, not refused again
            item.nack(seen.detail)
            return "seen"
        try:
            if item.path is not None:  # too large to hold: taken in as a message kept in a file (claim check)
                receipt = hub.receive(Arrival("sftp", path=item.path, partner=partner))
            else:
                receipt = hub.receive(Arrival("sftp", data=item.body, partner=partner))
        except InputError as exc:
            _remember(hub, partner, item.name, digest, "REFUSED", exc.detail)
            log.warning("%s file %s refused: %s", partner, item.name, exc.detail)
            item.nack(exc.detail)
            return "refused"
        _remember(hub, partner, item.name, digest, "ACCEPTED", receipt.message_id)
        item.ack()
        return "accepted"
    except DeliveryError as exc:  # this file's ack or nack failed: it stays, remembered; the next file is taken
        log.warning("%s file %s stays on the server: %s", partner, item.name, exc.reason)
        problems.append(f"{item.name}: {exc.reason}")
        return "failed"
    except TryLater:
        raise  # back-pressure: this file and the next stay for the next poll
    except Exception as exc:  # a defect met with this file: shown whole, and the next file is taken all the same
        log.exception("%s file %s stays on the server: taking it in failed", partner, item.name)
        problems.append(f"{item.name}: {first_line(exc)}")
        return "failed"


def _handled(hub, partner: str, item: InboundItem, problems: list[str]) -> str:
    """A file the connector handled itself: its outcome, and a refusal recorded as every door records one."""
    if item.handled == "failed":
        problems.append(f"{item.name}: could not be set aside ({item.refusal.detail if item.refusal else 'unknown'})")
    if item.handled == "refused" and item.refusal is not None:  # once: a file that stays is not refused again
        refused(hub, "sftp", item.refusal, party=partner)
    return item.handled if item.handled in OUTCOMES else "failed"


def _remember(hub, partner: str, name: str, digest: str, outcome: str, detail: str) -> None:
    """Record what became of a file (partner, name, digest): it is never taken in again."""
    try:
        with hub.sessions.begin() as session:
            seen = session.scalars(select(InboundFile).where(
                InboundFile.partner == partner, InboundFile.name == name, InboundFile.digest == digest)).first()
            if seen is None:
                session.add(InboundFile(partner=partner, name=name, digest=digest, outcome=outcome,
                                        detail=detail[:2000], processed_at=utcnow()))
            else:
                seen.outcome, seen.detail, seen.processed_at = outcome, detail[:2000], utcnow()
    except IntegrityError:
        pass  # another process handled the same file at the same time: it is remembered either way


def _record(hub, partner: str, *, ok: bool, detail: str) -> None:
    POLLS.labels(partner, "ok" if ok else "error").inc()
    hub.last_polls[partner] = LastPoll(at=dt.datetime.now(dt.timezone.utc), ok=ok, detail=detail[:1000])


def polling_partners(hub) -> dict[str, float]:
    """Partners whose connector polls (a Poller), with their polling interval in seconds."""
    return {code: float(connector.poll_interval_seconds)
            for code, connector in hub.connectors.items() if isinstance(connector, Poller)}


def polling_check(hub) -> dict:
    """For /readyz: not ready while the last poll of a partner in this process failed (only the leading
    process polls; the others report no poll)."""
    polls = {code: hub.last_polls.get(code) for code in polling_partners(hub)}
    failed = {code: last for code, last in polls.items() if last is not None and not last.ok}
    if failed:
        detail = "; ".join(f"{code} at {last.at:%H:%M:%S}: {last.detail}" for code, last in failed.items())
    else:
        detail = ", ".join(f"{code} {'ok at ' + f'{last.at:%H:%M:%S}' if last else 'not polled in this process'}"
                           for code, last in polls.items()) or "no polled partner"
    return {"ok": not failed, "detail": detail}

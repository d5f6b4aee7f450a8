"""Polling transports (SFTP): files a partner left for the hub are taken in like any callback.

For each item a connector's `poll()` yields: intake through the door (`hub.receive(Arrival("sftp", ...))`:
the same checks as every other door, hardened XML, schema, signature, access rules), then `ack()` once the
message is committed, or `nack(reason)` when intake refuses it (SFTP: the file goes to `failed/` with
the reason beside it; the door records the refusal in `refusals`, as for every door). Each file handled
is remembered by (partner, name, sha256): a file seen again because a crash came between the commit and
the ack is acked again, never processed twice; a refused file put back in place (its cause fixed) is
tried again. A transient failure (the database away) leaves the file where it is for the next poll.
"""
from __future__ import annotations

import hashlib
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connectors.base import Poller
from hub.store.db import utcnow
from hub.errors import InputError
from hub.intake.door import Arrival
from hub.store.models import InboundFile

log = logging.getLogger("hub.intake.polling")


def poll_partner(hub, partner: str) -> dict[str, int]:
    """Take in what `partner` left for the hub; returns counts of accepted, refused and already-seen files."""
    counts = {"accepted": 0, "refused": 0, "seen": 0}
    for item in hub.connectors[partner].poll():
        digest = hashlib.sha256(item.body).hexdigest()
        with hub.sessions() as session:
            seen = session.scalars(select(InboundFile).where(
                InboundFile.partner == partner, InboundFile.name == item.name, InboundFile.digest == digest)).first()
        if seen is not None and seen.outcome == "ACCEPTED":  # a crash came between the commit and the ack
            item.ack()
            counts["seen"] += 1
            continue
        try:
            receipt = hub.receive(Arrival("sftp", data=item.body, partner=partner))
        except InputError as exc:
            _remember(hub, partner, item.name, digest, "REFUSED", exc.detail)
            item.nack(exc.detail)
            log.warning("%s file %s refused: %s", partner, item.name, exc.detail)
            counts["refused"] += 1
            continue
        _remember(hub, partner, item.name, digest, "ACCEPTED", receipt.message_id)
        item.ack()
        counts["accepted"] += 1
    return counts


def _remember(hub, partner: str, name: str, digest: str, outcome: str, detail: str) -> None:
    """Record what became of a file; a refused file put back (after the cause was fixed) is tried again."""
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


def polling_partners(hub) -> dict[str, float]:
    """Partners whose connector polls (a Poller), with their polling interval in seconds."""
    return {code: float(connector.poll_interval_seconds)
            for code, connector in hub.connectors.items() if isinstance(connector, Poller)}

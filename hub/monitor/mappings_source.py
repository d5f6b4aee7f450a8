"""Where the console's mapping pages read mappings and run their checks: one module, so that the pages keep to
the shapes below whatever the store and the checks return.

    catalogue(hub) -> list[Mapping]                  every mapping, its routes (from the config) and active version
    find(hub, name) -> Mapping                       NotFound for a name that is not a mapping
    versions(hub, name) -> list[Version]             newest first                          (hub.mappings.store)
    version(hub, name, number) -> Version            NotFound for another number
    activations(hub, name) -> list[Activation]       newest first: who, when, from which version to which, why
    last_replay(hub, name, number) -> dict | None    that version's last replay, shown before its activation
    recent_messages(hub, name, limit) -> list[Sample]   stored messages a preview may run on, newest first
    preview(hub, name, xslt, *, message_id=None, document=None, actor) -> Preview   (hub.mappings.checks)
    replay(hub, name, xslt, *, last, actor) -> ReplayReport                          (kept with its version)
    add_version / activate / rollback                                                (hub.mappings.store)

Errors the pages rely on: NotFound (404) for an unknown mapping, version or message; any InputError from
add_version/activate/rollback (a refused stylesheet, failed sample cases or personal-data check, a version
already active, a concurrent activation: 409) is shown on the page it came from with its status, nothing changed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree
from sqlalchemy import select

from hub.errors import InputError, NotFound, StylesheetRefused
from hub.mappings import checks, store
from hub.mappings.store import Version
from hub.store.models import Message

FIRST_DIFFS = 5            # replay: the diffs kept, the first ones met
REPLAY_LIMIT = 10_000      # replay: messages read at most
PREVIEW_LIMIT = 2_000_000  # preview: bytes of an uploaded document at most


@dataclass(frozen=True)
class Activation:
    mapping: str
    from_number: int | None
    to_number: int
    actor: str
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class RouteUse:
    """One route entry using a mapping: outbound (`to`: canonical `type` -> partner) or inbound (`from`)."""
    direction: str
    partner: str
    type: str | None       # the canonical type (outbound)
    root: str | None       # the partner document's root (inbound)
    schema: str | None     # what the mapping's output must satisfy: a partner XSD, or "canonical"


@dataclass(frozen=True)
class Mapping:
    name: str
    partner: str
    direction: str
    routes: list[RouteUse]
    active: Version

    @property
    def last_change(self) -> dt.datetime:
        return self.active.created_at

    @property
    def schema(self) -> str | None:
        return next((use.schema for use in self.routes if use.schema), None)


@dataclass(frozen=True)
class Sample:
    message_id: str
    sender: str
    type: str
    received_at: dt.datetime


@dataclass
class Preview:
    output: str | None
    valid: bool | None                 # None: no schema to check against, or no output
    schema: str | None
    schema_errors: list[str]
    diff: list[str]                    # unified diff, active version's output -> this one's
    same_as_active: bool | None
    refused: str | None = None         # the stylesheet refused (compile or run), with the reason

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReplayReport:
    mapping: str
    sha256: str
    messages: int = 0
    identical: int = 0
    different: int = 0
    invalid: int = 0
    failed: int = 0
    first_diffs: list[dict] = field(default_factory=list)      # {"message_id", "diff": [lines]}
    first_invalid: list[dict] = field(default_factory=list)    # {"message_id", "errors": [..]}
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "per_second": self.per_second}


# -- reading mappings ---------------------------------------------------------------------------------------

def _direction(name: str) -> str:
    stem = Path(name).name
    return "from" if ".from-" in stem else "to"


def _uses(hub) -> dict[str, list[RouteUse]]:
    uses: dict[str, list[RouteUse]] = {}
    for route in hub.config.routes:
        for target in route.to:
            if target.mapping:
                uses.setdefault(target.mapping, []).append(
                    RouteUse("to", target.partner, route.type, None, target.schema_))
    for entry in hub.config.inbound:
        uses.setdefault(entry.mapping, []).append(RouteUse("from", entry.partner, None, entry.root, "canonical"))
    return uses


def catalogue(hub) -> list[Mapping]:
    """Every mapping with its stored versions, with the routes that use it, ordered by partner then name."""
    uses = _uses(hub)
    with hub.sessions() as session:
        return [Mapping(name, name.split("/")[0], _direction(name), uses.get(name, []),
                        store.active(session, name)) for name in sorted(store.names(session))]


def find(hub, name: str) -> Mapping:
    with hub.sessions() as session:
        if name not in store.names(session):
            raise NotFound(f"no mapping {name[:120]!r}")
        active = store.active(session, name)
    return Mapping(name, name.split("/")[0], _direction(name), _uses(hub).get(name, []), active)


def versions(hub, name: str) -> list[Version]:
    with hub.sessions() as session:
        return list(reversed(store.versions(session, name)))


def version(hub, name: str, number: int) -> Version:
    with hub.sessions() as session:
        return store.get(session, name, int(number))


def activations(hub, name: str) -> list[Activation]:
    with hub.sessions() as session:
        return [Activation(a.mapping, a.from_number, a.number, a.actor, a.reason, a.at)
                for a in reversed(store.activations(session, name))]


# -- what a preview and a replay run on -------------------------------------------------------------------

def _query(mapping: Mapping):
    """Messages whose stored bytes the mapping maps: of an outbound route's type, or sent by an inbound
    route's partner."""
    types = sorted({use.type for use in mapping.routes if use.direction == "to" and use.type})
    senders = sorted({use.partner for use in mapping.routes if use.direction == "from"})
    query = select(Message).where(Message.purged_at.is_(None), Message.payload_path.is_(None))
    if mapping.direction == "to":
        return query.where(Message.type.in_(types or ["-"]))
    # mapped in from the partner's own format: those have a canonical form of their own
    return query.where(Message.sender.in_(senders or ["-"]), Message.canonical_bytes.is_not(None))


def _reads(mapping: Mapping, data: bytes | None) -> bool:
    """Whether the mapping reads these stored bytes: any outbound message of its routes; an inbound partner
    document only with the root element of one of its routes (a partner also sends canonical envelopes)."""
    if data is None:
        return False
    if mapping.direction == "to":
        return True
    roots = {use.root for use in mapping.routes if use.root}
    try:
        return _parse(data, "message").tag in roots
    except InputError:
        return False


def recent_messages(hub, name: str, limit: int = 50) -> list[Sample]:
    mapping = find(hub, name)
    with hub.sessions() as session:
        rows = session.scalars(_query(mapping).order_by(Message.id.desc()).limit(limit * 4)).all()
        return [Sample(m.message_id, m.sender, m.type, m.received_at) for m in rows
                if _reads(mapping, _input_of(mapping, m))][:limit]


def _input_of(mapping: Mapping, message: Message) -> bytes | None:
    """What the mapping reads from a stored message: the canonical bytes going out, the received ones coming in."""
    return message.canonical if mapping.direction == "to" else message.received_bytes


def _parse(data: bytes, what: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{what}: not well-formed XML ({exc})") from None


def preview(hub, name: str, xslt: bytes, *, message_id: str | None = None, document: bytes | None = None,
            actor: str | None = None) -> Preview:
    """`xslt` run on one stored message (by id; the view audited with `actor`) or an uploaded document: its output,
    its validity against the schema the mapping's output must satisfy, the diff against the active version's."""
    mapping = find(hub, name)
    shown = checks.preview(hub, name, xslt, message_id=message_id, document=document, actor=actor)
    if shown.error is not None:
        return Preview(None, None, mapping.schema, [], [], None, refused=shown.error)
    return Preview(shown.output, shown.valid, mapping.schema, shown.schema_errors, shown.diff.splitlines(),
                   shown.identical)


def replay(hub, name: str, xslt: bytes, *, last: int, actor: str) -> ReplayReport:
    """`xslt` over the last `last` stored messages the mapping reads (audited, kept with its version): how many
    outputs are identical to the active version's, how many differ (the first diffs), how many would be invalid."""
    find(hub, name)
    if not 1 <= last <= REPLAY_LIMIT:
        raise InputError(f"last: between 1 and {REPLAY_LIMIT}")
    done = store.replay(hub, name, xslt, actor=actor, last=last)
    if done.refused:
        raise StylesheetRefused(done.refused)
    report = ReplayReport(name, hashlib.sha256(xslt).hexdigest(), messages=done.messages, identical=done.identical,
                          different=done.different, invalid=done.invalid, failed=done.failed, seconds=done.seconds)
    report.first_diffs = [{"message_id": d.message_id, "diff": d.diff.splitlines()} for d in done.diffs]
    report.first_invalid = [{"message_id": p.message_id, "errors": p.schema_errors or [p.error or ""]}
                            for p in done.problems]
    return report


# -- changing versions ----------------------------------------------------------------------------------------

def add_version(hub, name: str, xslt: bytes, *, author: str, comment: str) -> Version:
    with hub.sessions.begin() as session:
        return store.add_version(session, name, xslt, author=author, comment=comment,
                                                 mappings_dir=hub.settings.mappings_dir)


def activate(hub, name: str, number: int, *, actor: str, reason: str) -> Version:
    with hub.sessions.begin() as session:
        return store.activate(session, name, int(number), actor=actor, reason=reason,
                                              settings=hub.settings)


def rollback(hub, name: str, *, actor: str, reason: str, expected_active: int | None = None) -> Version:
    with hub.sessions.begin() as session:
        return store.rollback(session, name, actor=actor, reason=reason, settings=hub.settings,
                                       expected_active=expected_active)


def last_replay(hub, name: str, number: int) -> dict | None:
    """The last replay of version `number` (shown before its activation), or None."""
    with hub.sessions() as session:
        return store.last_replay(session, name, int(number))

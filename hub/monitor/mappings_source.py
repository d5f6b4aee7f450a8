"""Where the console's mapping pages read mappings and run their checks: one module, so that the pages do not
care how versions are kept.

The pages call only the functions below, and read only the fields of the dataclasses below. They follow
`hub.mappings.store` (versions, activation) and `hub.mappings.checks` (preview, replay). While versions are not
stored in the database, this module reads the files under mappings/ as the one, active version of each mapping
(number 1, author "mappings/", the file's time), lists no activation and no last replay, and refuses saving,
activation and rollback with `NotYetStored` (409, which the page shows). Preview and replay run here with the
safe compiler (`hub.mappings.safe`) on the stored bytes of the messages of the routes that use the mapping:

    catalogue(hub) -> list[Mapping]                  every mapping, its routes (from the config) and active version
    find(hub, name) -> Mapping                       NotFound for a name that is not a mapping
    versions(hub, name) -> list[Version]             newest first                 (store.versions)
    version(hub, name, number) -> Version            NotFound for another number  (store.get)
    activations(hub, name) -> list[Activation]       newest first: who, when, from which version to which, why
    last_replay(hub, name) -> ReplayReport | None    the last replay run, shown before an activation
    recent_messages(hub, name, limit) -> list[Sample]   stored messages a preview may run on, newest first
    preview(hub, name, xslt, *, message_id=None, document=None) -> Preview          (checks.preview)
    replay(hub, name, xslt, *, last) -> ReplayReport                                (checks.replay)
    add_version(hub, name, xslt, *, author, comment) -> Version                     (store.add_version)
    activate(hub, name, number, *, actor, reason) -> Version                        (store.activate)
    rollback(hub, name, *, actor, reason) -> Version                                (store.rollback)
    can_change(hub) -> bool                          whether saving, activation and rollback are offered plainly

Errors the pages rely on: NotFound (404) for an unknown mapping, version or message; any InputError from
add_version/activate/rollback (a refused stylesheet, failed sample cases or personal-data check, a version
already active, a concurrent activation: 409) is shown on the page it came from with its status, nothing changed.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree
from sqlalchemy import select

from hub.errors import HubError, InputError, NotFound, StylesheetRefused
from hub.mappings.safe import compile_stylesheet, transform
from hub.store.models import Message

FIRST_DIFFS = 5            # replay: the diffs kept, the first ones met
REPLAY_LIMIT = 10_000      # replay: messages read at most
PREVIEW_LIMIT = 2_000_000  # preview: bytes of an uploaded document at most


class NotYetStored(InputError):
    """Activation, rollback and new versions need mapping versions kept in the database (409: nothing changed)."""
    status = 409
    title = "Not available until versions are stored"


@dataclass(frozen=True)
class Version:
    mapping: str
    number: int
    sha256: str
    xslt: bytes
    author: str
    comment: str
    created_at: dt.datetime
    active: bool


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


def _file_version(hub, name: str) -> Version:
    path = hub.settings.mappings_dir / name
    text = path.read_bytes()
    changed = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return Version(name, 1, hashlib.sha256(text).hexdigest(), text, "mappings/", "", changed, True)


def catalogue(hub) -> list[Mapping]:
    """Every mapping under mappings/, with the routes that use it, ordered by partner then name."""
    uses = _uses(hub)
    found = []
    for path in sorted(hub.settings.mappings_dir.rglob("*.xsl")):
        name = str(path.relative_to(hub.settings.mappings_dir))
        if "/cases/" in f"/{name}":
            continue
        found.append(Mapping(name, name.split("/")[0], _direction(name), uses.get(name, []),
                             _file_version(hub, name)))
    return found


def find(hub, name: str) -> Mapping:
    for mapping in catalogue(hub):
        if mapping.name == name:
            return mapping
    raise NotFound(f"no mapping {name[:120]!r}")


def versions(hub, name: str) -> list[Version]:
    return [find(hub, name).active]


def version(hub, name: str, number: int) -> Version:
    for candidate in versions(hub, name):
        if candidate.number == number:
            return candidate
    raise NotFound(f"mapping {name} has no version {number}")


def activations(hub, name: str) -> list[Activation]:
    find(hub, name)
    return []


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


def _text(element: etree._Element) -> str:
    return etree.tostring(element, pretty_print=True, encoding="unicode")


def _schema_errors(hub, element: etree._Element, schema: str | None) -> list[str]:
    if not schema:
        return []
    try:
        hub.schemas.validate(element, schema, what="output")
    except HubError as exc:
        problems = getattr(exc, "problems", None) or []
        return [f"line {p.line}: {p.message}" for p in problems][:20] or [str(exc)]
    return []


def unified(before: str, after: str, *, before_name: str, after_name: str) -> list[str]:
    return list(difflib.unified_diff(before.splitlines(), after.splitlines(), before_name, after_name,
                                     lineterm="", n=2))


def preview(hub, name: str, xslt: bytes, *, message_id: str | None = None,
            document: bytes | None = None) -> Preview:
    """`xslt` run on one stored message (by id) or an uploaded document: its output, its validity against the
    schema the mapping's output must satisfy, and the diff against the active version's output."""
    mapping = find(hub, name)
    if (message_id is None) == (document is None):
        raise InputError("message_id: give a stored message's id or a document, one of them")
    if document is not None:
        if len(document) > PREVIEW_LIMIT:
            raise InputError(f"document: larger than {PREVIEW_LIMIT} bytes")
        source = _parse(document, "document")
    else:
        with hub.sessions() as session:
            message = session.scalars(_query(mapping).where(Message.message_id == message_id)
                                      .order_by(Message.id.desc()).limit(1)).first()
            data = _input_of(mapping, message) if message is not None else None
        if not _reads(mapping, data):
            raise NotFound(f"no stored message {message_id[:80]!r} this mapping reads")
        source = _parse(data, "message")
    schema = mapping.schema
    try:
        output = transform(compile_stylesheet(xslt, folder=hub.settings.mappings_dir / mapping.partner), source)
    except StylesheetRefused as exc:
        return Preview(None, None, schema, [], [], None, refused=str(exc))
    text = _text(output)
    errors = _schema_errors(hub, output, schema)
    try:
        active = _text(transform(_compiled_active(hub, mapping), source))
    except StylesheetRefused as exc:
        active = f"<!-- the active version fails on this document: {exc} -->"
    diff = unified(active, text, before_name=f"active v{mapping.active.number}", after_name="this version")
    return Preview(text, (not errors) if schema else None, schema, errors, diff, not diff)


_compiled = threading.local()  # per thread, as hub/xml/mapping.py does: a compiled stylesheet stays in its thread


def _compiled_active(hub, mapping: Mapping) -> etree.XSLT:
    """The active version compiled once per thread, keyed by its sha256."""
    cache = _compiled.__dict__.setdefault("xslt", {})
    key = mapping.active.sha256
    if key not in cache:
        cache[key] = compile_stylesheet(mapping.active.xslt, folder=hub.settings.mappings_dir / mapping.partner)
    return cache[key]


def replay(hub, name: str, xslt: bytes, *, last: int) -> ReplayReport:
    """`xslt` over the last `last` stored messages the mapping reads: how many outputs are identical to the
    active version's, how many differ (the first diffs), how many would be invalid."""
    mapping = find(hub, name)
    if not 1 <= last <= REPLAY_LIMIT:
        raise InputError(f"last: between 1 and {REPLAY_LIMIT}")
    candidate = compile_stylesheet(xslt, folder=hub.settings.mappings_dir / mapping.partner)  # refused: raised
    active = _compiled_active(hub, mapping)
    report = ReplayReport(name, hashlib.sha256(xslt).hexdigest())
    started = time.perf_counter()
    with hub.sessions() as session:
        rows = session.execute(_query(mapping).with_only_columns(
            Message.message_id, Message.canonical_bytes, Message.received_bytes)
            .order_by(Message.id.desc()).limit(last)).all()
    for message_id, canonical, received in rows:
        data = (canonical or received) if mapping.direction == "to" else received
        if not _reads(mapping, data):
            continue
        report.messages += 1
        try:
            source = _parse(data, "message")
            new = transform(candidate, source)
        except (StylesheetRefused, InputError):
            report.failed += 1
            continue
        try:
            old_text = _text(transform(active, source))
        except StylesheetRefused:
            old_text = ""
        new_text = _text(new)
        if new_text == old_text:
            report.identical += 1
        else:
            report.different += 1
            if len(report.first_diffs) < FIRST_DIFFS:
                report.first_diffs.append({"message_id": message_id, "diff": unified(
                    old_text, new_text, before_name=f"active v{mapping.active.number}", after_name="replayed")})
        errors = _schema_errors(hub, new, mapping.schema)
        if errors:
            report.invalid += 1
            if len(report.first_invalid) < FIRST_DIFFS:
                report.first_invalid.append({"message_id": message_id, "errors": errors[:5]})
    report.seconds = time.perf_counter() - started
    return report


# -- changing versions ----------------------------------------------------------------------------------------

NOT_YET = ("versions are not stored yet: this hub reads its mappings from the files under mappings/ "
           "(edit a file and restart the hub to change one)")


def add_version(hub, name: str, xslt: bytes, *, author: str, comment: str) -> Version:
    mapping = find(hub, name)
    compile_stylesheet(xslt, folder=hub.settings.mappings_dir / mapping.partner)  # a refusal says why first
    raise NotYetStored(f"saving a version: {NOT_YET}")


def activate(hub, name: str, number: int, *, actor: str, reason: str) -> Version:
    version(hub, name, number)
    raise NotYetStored(f"activation: {NOT_YET}")


def rollback(hub, name: str, *, actor: str, reason: str) -> Version:
    find(hub, name)
    raise NotYetStored(f"rollback: {NOT_YET}")


def last_replay(hub, name: str) -> ReplayReport | None:
    """The last replay run of the mapping (shown before an activation); none is kept while versions are files."""
    find(hub, name)
    return None


def can_change(hub) -> bool:
    """Whether versions can be saved, activated and rolled back here (the pages then offer it plainly)."""
    return False

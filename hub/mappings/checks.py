"""Checks a mapping version passes before it goes live, each a plain function returning plain data.

- `run_cases`: the mapping's sample cases (input -> expected), a readable unified diff on a mismatch, the
  output checked against the partner's schema;
- `preview`: a version run on one stored message or an uploaded document: its output, whether the partner's
  schema accepts it, and the diff against what the active version gives;
- `replay`: a version run over the stored history of the routes that use the mapping (the last N messages, or a
  date range), from the stored bytes the hub mapped: how many outputs are identical, different (the first diffs)
  or invalid for the partner, and how fast;
- `personal_data_violations` (hub/mappings/personal_data.py, importable from here): fields a version would give
  a partner that the policy does not allow it.

Outputs are compared canonicalised (C14N 2.0, whitespace-only text dropped): a change of indentation or of
namespace prefixes is not a difference a partner sees."""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from lxml import etree
from sqlalchemy import select

from hub.errors import HubError, InputError, NotFound, SchemaInvalid, StylesheetRefused
from hub.mappings import safe
from hub.mappings.catalogue import MappingInfo, active_stylesheet, config_of, describe
from hub.mappings.personal_data import personal_data_violations  # noqa: F401 (one of the checks, named here too)
from hub.xml.safe import parse_trusted

REPLAY_BATCH = 200  # messages a replay hands the stylesheet worker at once
FIRST_DIFFS = 5
DIFF_LINES = 60
_blank = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


# -- comparing outputs -------------------------------------------------------------------------------------

def canonical_form(element: etree._Element) -> bytes:
    return etree.tostring(etree.fromstring(etree.tostring(element), _blank), method="c14n2", strip_text=True)


def readable(element: etree._Element) -> str:
    return etree.tostring(etree.fromstring(etree.tostring(element), _blank), pretty_print=True,
                          encoding="unicode")


def unified_diff(expected: str, actual: str, *, expected_name: str, actual_name: str) -> str:
    """A unified diff of two pretty-printed documents, cut at DIFF_LINES lines."""
    lines = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(), expected_name, actual_name,
                                      lineterm="", n=2))
    if len(lines) > DIFF_LINES:
        lines = lines[:DIFF_LINES] + [f"... ({len(lines) - DIFF_LINES} more lines)"]
    return "\n".join(lines)


def _schema_errors(schemas, element, info: MappingInfo) -> list[str]:
    try:
        schemas.validate(element, info.schema, what=f"output of {info.name}")
    except SchemaInvalid as exc:
        return [f"line {p.line}: {p.message}" if p.line else p.message for p in exc.problems] or [str(exc)]
    return []


@lru_cache(maxsize=4)
def _schema_set(schemas_dir: Path):
    from hub.xml.schemas import SchemaSet
    return SchemaSet(schemas_dir)


def compile_version(info: MappingInfo, xslt: bytes) -> etree.XSLT:
    """The version compiled with the mapping's access rules (StylesheetRefused names the line and the reason)."""
    return safe.compile_stylesheet(xslt, folder=info.folder)


# -- sample cases ------------------------------------------------------------------------------------------

@dataclass
class CaseResult:
    name: str
    passed: bool
    diff: str = ""                                     # unified diff expected -> actual, on a mismatch
    schema_errors: list[str] = field(default_factory=list)
    error: str | None = None                           # the stylesheet failed on this input

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CaseReport:
    mapping: str
    cases: list[CaseResult]
    refused: str | None = None   # the version does not compile (or is not allowed): no case ran

    @property
    def passed(self) -> bool:
        return self.refused is None and bool(self.cases) and all(c.passed for c in self.cases)

    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def as_dict(self) -> dict:
        return {"mapping": self.mapping, "passed": self.passed, "refused": self.refused,
                "cases": [c.as_dict() for c in self.cases]}


def run_cases(mapping: str, xslt: bytes, settings, *, config=None, schemas=None) -> CaseReport:
    """Every sample case of `mapping` run through `xslt`: passed when the output equals the expected document
    (canonicalised) and the partner's schema accepts it. A mapping without cases does not pass."""
    config = config or config_of(settings)
    schemas = schemas or _schema_set(settings.schemas_dir)
    info = describe(config, settings, mapping)
    try:
        compiled = compile_version(info, xslt)
    except StylesheetRefused as exc:
        return CaseReport(mapping, [], refused=str(exc))
    results = []
    for case in info.cases():
        try:
            output = safe.transform(compiled, etree.parse(str(case.input), _blank).getroot())
        except StylesheetRefused as exc:
            results.append(CaseResult(case.name, False, error=str(exc)))
            continue
        expected = etree.parse(str(case.expected), _blank).getroot()
        diff = ""
        if canonical_form(output) != canonical_form(expected):
            diff = unified_diff(readable(expected), readable(output), expected_name=case.expected.name,
                                actual_name=f"output of {case.input.name}")
        errors = _schema_errors(schemas, output, info)
        results.append(CaseResult(case.name, not diff and not errors, diff=diff, schema_errors=errors))
    return CaseReport(mapping, results)


CASE_ADDED, PREVIEWED, REPLAYED = "MAPPING_CASE_ADDED", "MAPPING_PREVIEWED", "MAPPING_REPLAYED"


def add_case(hub, mapping: str, message_id: str, case_name: str, *, actor: str) -> tuple[Path, Path]:
    """A sample case from a stored message in one step: its stored bytes as the input, and what the active
    version makes of them as the expected output. An existing case of that name is not overwritten; the audit
    log names who added it, from which message."""
    if not case_name or not all(c.isalnum() or c in "-_" for c in case_name) or len(case_name) > 80:
        raise InputError("case_name: letters, digits, '-' and '_' only (at most 80)")
    info = describe(hub.config, hub.settings, mapping)
    source = _stored_input(hub, info, message_id)
    output = safe.transform(compile_version(info, active_stylesheet(hub, info)), source)
    info.cases_dir.mkdir(parents=True, exist_ok=True)
    written = (info.cases_dir / f"{case_name}.input.xml", info.cases_dir / f"{case_name}.expected.xml")
    expected = etree.tostring(output, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    try:  # "x": never over a case someone else is adding at the same moment
        with open(written[0], "xb") as file:
            file.write(etree.tostring(source, xml_declaration=True, encoding="UTF-8") + b"\n")
    except FileExistsError:
        raise InputError(f"case_name: {mapping} already has a case {case_name!r}") from None
    try:
        with open(written[1], "xb") as file:
            file.write(expected)
    except FileExistsError:
        written[0].unlink()
        raise InputError(f"case_name: {mapping} already has a case {case_name!r}") from None
    _audit(hub, actor, CASE_ADDED, mapping, f"case {case_name} from message {message_id}", expected)
    return written


# -- preview -----------------------------------------------------------------------------------------------

@dataclass
class Preview:
    mapping: str
    source: str                     # "message <id>" or "uploaded document"
    output: str | None              # the version's output, pretty-printed
    valid: bool                     # the partner's schema accepts it
    schema_errors: list[str]
    identical: bool | None          # same as the active version's output (None: the active version failed)
    diff: str                       # unified diff active -> this version
    error: str | None = None        # the version refused or failed on this input

    def as_dict(self) -> dict:
        return asdict(self)


def _stored_input(hub, info: MappingInfo, message_id: str) -> etree._Element:
    from hub.messages import find_message
    if not message_id or len(message_id) > 80 or any(ord(c) < 32 or c == "\x7f" for c in message_id):
        raise InputError("message_id: a stored message's id (at most 80 characters, no control character)")
    with hub.reads() as session:
        message = find_message(session, message_id)
        data = message.canonical if info.direction == "to" else message.received_bytes
    if data is None:
        raise NotFound(f"message {message_id!r} has no stored bytes to map (purged, or kept in a file)")
    document = parse_trusted(data)
    if not info.applies_to(document):
        raise InputError(f"message_id: {message_id!r} is not a message {info.name} maps")
    return document


def preview(hub, mapping: str, xslt: bytes, *, message_id: str | None = None,
            document: bytes | None = None, actor: str | None = None) -> Preview:
    """`xslt` run on a stored message (its stored bytes, as delivery maps them) or an uploaded document. The
    output of a stored message is personal data: with `actor`, the view is in the audit log (PREVIEWED)."""
    if (message_id is None) == (document is None):
        raise InputError("message_id: give a stored message's id or a document, one of the two")
    info = describe(hub.config, hub.settings, mapping)
    if message_id is not None:
        source, where = _stored_input(hub, info, message_id), f"message {message_id}"
        if actor:
            _audit(hub, actor, PREVIEWED, mapping, f"on message {message_id}", xslt)
    else:
        from hub.xml.safe import parse_untrusted
        source, where = parse_untrusted(document, max_bytes=hub.settings.max_message_bytes), "uploaded document"
    try:
        output = safe.transform(compile_version(info, xslt), source)
    except StylesheetRefused as exc:
        return Preview(mapping, where, None, False, [], None, "", error=str(exc))
    errors = _schema_errors(hub.schemas, output, info)
    try:
        active = safe.transform(compile_version(info, active_stylesheet(hub, info)), source)
    except StylesheetRefused:
        identical, diff = None, ""
    else:
        identical = canonical_form(active) == canonical_form(output)
        diff = "" if identical else unified_diff(readable(active), readable(output), expected_name="active version",
                                                 actual_name="this version")
    return Preview(mapping, where, readable(output), not errors, errors, identical, diff)


# -- replay ------------------------------------------------------------------------------------------------

@dataclass
class ReplayDiff:
    message_id: str
    diff: str = ""
    schema_errors: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ReplayReport:
    mapping: str
    messages: int = 0        # stored messages of the routes using the mapping, in the window
    identical: int = 0       # this version's output is the active version's
    different: int = 0       # it is not (the first few in `diffs`)
    invalid: int = 0         # the partner's schema would refuse this version's output (counted apart)
    failed: int = 0          # this version fails on the message (no output at all)
    skipped: int = 0         # no bytes to map (purged, kept in a file) or not a message the mapping maps
    seconds: float = 0.0
    diffs: list[ReplayDiff] = field(default_factory=list)     # the first differences
    problems: list[ReplayDiff] = field(default_factory=list)  # the first invalid outputs and failures
    refused: str | None = None

    @property
    def per_second(self) -> float:
        return round(self.messages / self.seconds, 1) if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "per_second": self.per_second}


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


def replay(hub, mapping: str, xslt: bytes, *, last: int | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, first_diffs: int = FIRST_DIFFS, batch: int = 500,
           actor: str | None = None) -> ReplayReport:
    """`xslt` and the active version run over the stored messages of the routes that use `mapping` (a mapping to
    a partner: the messages of the route types whose targets name it, each as delivery maps it; from a partner:
    the documents that partner sent): the last `last` of them (newest first), or those received in
    [since, until). Neither given: the last 1,000. With `actor`, the replay and its counts are in the audit log
    (REPLAYED, its digest the version's sha256); its caller keeps the counts with the version they replayed
    (hub/mappings/store.py `keep_replay`), so that its activation shows them."""
    from hub.store.models import Message
    if last is not None and last < 1:
        raise InputError("last: a positive number of messages")
    since, until = _aware(since), _aware(until)
    if since and until and since >= until:
        raise InputError("since: must come before until")
    info = describe(hub.config, hub.settings, mapping)
    report = ReplayReport(mapping)
    try:
        candidate = compile_version(info, xslt)
    except StylesheetRefused as exc:
        report.refused = str(exc)
        return report
    current = compile_version(info, active_stylesheet(hub, info))
    column = Message.canonical_bytes if info.direction == "to" else Message.received_bytes
    query = select(Message.id, Message.message_id, column, Message.received_bytes)
    if info.direction == "to":  # the route's messages (a target's `when` is applied to each, as delivery does)
        query = query.where(Message.type.in_(info.message_types))
    else:
        query = query.where(Message.sender == info.partner, Message.canonical_bytes.is_not(None))
    if since:
        query = query.where(Message.received_at >= since)
    if until:
        query = query.where(Message.received_at < until)
    if last is None and since is None and until is None:
        last = 1000
    query = query.order_by(Message.id.desc())
    if last is not None:
        query = query.limit(last)
    started = time.perf_counter()
    pending: list[tuple[str, etree._Element, bytes]] = []

    def flush() -> None:  # the candidate runs in the stylesheet worker, a batch at a time (hub/xml/stylesheets.py)
        outputs = safe.transform_many(candidate, [data for _, _, data in pending])
        for (message_id, source, _), output in zip(pending, outputs):
            _replay_one(hub, info, report, message_id, source, output, current, first_diffs)
        pending.clear()

    with hub.streamed_reads() as session:
        for _, message_id, stored, received in session.execute(query.execution_options(yield_per=batch)):
            report.messages += 1
            data = stored or received
            if data is None:
                report.skipped += 1
                continue
            source = parse_trusted(data)
            if not info.applies_to(source):
                report.skipped += 1
                continue
            pending.append((message_id, source, data))
            if len(pending) >= REPLAY_BATCH:
                flush()
    if pending:
        flush()
    report.seconds = round(time.perf_counter() - started, 4)
    if actor:
        _audit(hub, actor, REPLAYED, mapping, replay_summary(report), xslt)
    return report



def replay_summary(report: ReplayReport) -> str:
    return (f"{report.messages} messages: {report.identical} identical, {report.different} different, "
            f"{report.invalid} invalid, {report.failed} failed")


def _audit(hub, actor: str, action: str, mapping: str, detail: str, xslt: bytes) -> None:
    from hub.evidence.audit import record
    with hub.sessions.begin() as session:
        record(session, actor=actor, action=action, subject=mapping, detail=detail,
               digest=hashlib.sha256(xslt).hexdigest())


def _replay_one(hub, info, report, message_id, source, output, current, first_diffs) -> None:
    """One message of a replay: `output` is the candidate's (or why it failed), compared with what the active
    version, which passed its checks and maps deliveries in-process, makes of `source`."""
    if isinstance(output, StylesheetRefused):
        report.failed += 1
        if len(report.problems) < first_diffs:
            report.problems.append(ReplayDiff(message_id, error=str(output)))
        return
    errors = _schema_errors(hub.schemas, output, info)
    if errors:
        report.invalid += 1
        if len(report.problems) < first_diffs:
            report.problems.append(ReplayDiff(message_id, schema_errors=errors[:5]))
    try:
        before = current(source).getroot()
    except (etree.XSLTApplyError, HubError):
        before = None
    if before is not None and canonical_form(before) == canonical_form(output):
        report.identical += 1
        return
    report.different += 1
    if len(report.diffs) < first_diffs:
        diff = unified_diff(readable(before), readable(output), expected_name="active version",
                            actual_name="this version") if before is not None else "(the active version fails here)"
        report.diffs.append(ReplayDiff(message_id, diff=diff))

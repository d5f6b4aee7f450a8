"""`hub mappings test | preview | replay | add-case`: try a mapping version before it goes live.

    hub mappings test NAME [--file XSL]                 the sample cases (a diff for each mismatch) and the
                                                        personal-data policy; exit 1 when either fails
    hub mappings preview NAME (--message ID | --document FILE) [--file XSL]
                                                        the output, its validity for the partner, the diff
                                                        against the active version's output
    hub mappings replay NAME [--file XSL] [--last N | --since DATE [--until DATE]]
                                                        the version over the stored history of the routes that
                                                        use the mapping: identical / different / invalid
    hub mappings add-case NAME MESSAGE_ID CASE_NAME     a sample case from a stored message (the expected
                                                        output from the active version); audited

A preview on a stored message and a replay are written to the audit log (their output is personal data).

NAME is the mapping's path under mappings/ (e.g. narsa/licence-request.to-narsa.xsl); --file is the version
to try (default: the active one). `--json` prints the report as the API gives it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from rich.markup import escape

from hub.cli import console, open_hub


def _stylesheet(args, hub_or_settings) -> bytes:
    if args.file:
        return Path(args.file).read_bytes()
    from hub.mappings.catalogue import active_stylesheet, describe
    hub = hub_or_settings
    return active_stylesheet(hub, describe(hub.config, hub.settings, args.name))


def _say(text: str, style: str = "") -> None:
    console.print(f"[{style}]{escape(text)}[/]" if style else escape(text), highlight=False, soft_wrap=True)


def _diff(text: str) -> None:
    for line in text.splitlines():
        style = "red" if line.startswith("-") and not line.startswith("---") else \
                "green" if line.startswith("+") and not line.startswith("+++") else ""
        _say(f"    {line}", style)


def cmd_test(args) -> int:
    from hub.mappings.checks import run_cases
    from hub.mappings.personal_data import personal_data_violations
    hub = open_hub()
    xslt = _stylesheet(args, hub)
    report = run_cases(args.name, xslt, hub.settings, config=hub.config, schemas=hub.schemas)
    violations = personal_data_violations(args.name, xslt, hub.settings, config=hub.config)
    if args.json:
        console.print_json(json.dumps({**report.as_dict(), "personal_data": violations}))
        return 0 if report.passed and not violations else 1
    if report.refused:
        _say(f"refused: {report.refused}", "red")
    for case in report.cases:
        _say(f"{'PASS' if case.passed else 'FAIL'} {case.name}", "green" if case.passed else "red")
        if case.error:
            _say(f"    {case.error}", "red")
        for error in case.schema_errors:
            _say(f"    invalid for the partner: {error}", "red")
        _diff(case.diff)
    if not report.cases and not report.refused:
        _say(f"{args.name} has no sample case (add one: hub mappings add-case)", "red")
    for violation in violations:
        _say(f"personal data: {violation}", "red")
    passed = report.passed and not violations
    _say(f"{args.name}: {sum(c.passed for c in report.cases)}/{len(report.cases)} cases pass; personal data: "
         f"{'respected' if not violations else f'{len(violations)} violation(s)'}", "green" if passed else "red")
    return 0 if passed else 1


def cmd_preview(args) -> int:
    from hub.mappings.checks import preview
    hub = open_hub()
    document = Path(args.document).read_bytes() if args.document else None
    from hub.evidence.audit import cli_actor
    result = preview(hub, args.name, _stylesheet(args, hub), message_id=args.message, document=document,
                     actor=cli_actor())
    if args.json:
        console.print_json(json.dumps(result.as_dict()))
        return 0 if result.valid else 1
    if result.error:
        _say(f"refused on {result.source}: {result.error}", "red")
        return 1
    console.print(escape(result.output), highlight=False, soft_wrap=True)
    _say(f"valid for the partner ({result.source})" if result.valid else "INVALID for the partner:",
         "green" if result.valid else "red")
    for error in result.schema_errors:
        _say(f"    {error}", "red")
    _say({True: "same output as the active version", False: "differs from the active version:",
          None: "the active version fails on this input"}[result.identical])
    _diff(result.diff)
    return 0 if result.valid else 1


def _when(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def cmd_replay(args) -> int:
    from hub.mappings.store import replay
    hub = open_hub()
    from hub.evidence.audit import cli_actor
    report = replay(hub, args.name, _stylesheet(args, hub), last=args.last, since=args.since, until=args.until,
                    actor=cli_actor())
    if args.json:
        console.print_json(json.dumps(report.as_dict(), default=str))
        return 0 if not report.refused else 1
    if report.refused:
        _say(f"refused: {report.refused}", "red")
        return 1
    _say(f"{args.name}: {report.messages} messages in {report.seconds:.2f} s ({report.per_second:,.0f}/s): "
         f"{report.identical} identical, {report.different} different, {report.invalid} invalid for the partner, "
         f"{report.failed} failed, {report.skipped} skipped", "green" if report.different == report.invalid ==
         report.failed == 0 else "yellow")
    for problem in report.problems:
        _say(f"  {problem.message_id}: {problem.error or '; '.join(problem.schema_errors)}", "red")
    for difference in report.diffs:
        _say(f"  {difference.message_id}:")
        _diff(difference.diff)
    return 0


def cmd_add_case(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.mappings.checks import add_case
    hub = open_hub()
    written = add_case(hub, args.name, args.message_id, args.case_name, actor=cli_actor())
    _say(f"wrote {written[0]} and {written[1]} (expected: the active version's output); check them, then "
         f"commit them with the mapping", "green")
    return 0


def _guarded(command):
    """Input the checks refuse (a bad name, a missing message, a bad window) is said in a line, exit 1."""
    def run(args) -> int:
        from hub.errors import HubError
        try:
            return command(args)
        except HubError as exc:
            from hub.errors import ConfigError
            if isinstance(exc, ConfigError):
                raise
            _say(str(exc), "red")
            return 1
        except OSError as exc:
            _say(f"{exc.filename}: {exc.strerror}", "red")
            return 1
    return run


def add_check_commands(msub) -> None:
    """The check commands, added to the `hub mappings` group's subparsers."""
    def version(q) -> None:
        q.add_argument("name", metavar="NAME", help="the mapping's path under mappings/")
        q.add_argument("--file", metavar="XSL", help="the version to try (default: the active version)")
        q.add_argument("--json", action="store_true", help="print the report as JSON")

    q = msub.add_parser("test", help="run a version's sample cases and the personal-data check")
    version(q)
    q.set_defaults(func=_guarded(cmd_test))
    q = msub.add_parser("preview", help="run a version on a stored message or a document")
    version(q)
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--message", metavar="ID", help="a stored message's id")
    source.add_argument("--document", metavar="FILE", help="a document to map")
    q.set_defaults(func=_guarded(cmd_preview))
    q = msub.add_parser("replay", help="run a version over the stored history of the routes using the mapping")
    version(q)
    q.add_argument("--last", type=int, metavar="N", help="the last N messages (default 1000 without dates)")
    q.add_argument("--since", type=_when, metavar="DATE", help="messages received from DATE (UTC)")
    q.add_argument("--until", type=_when, metavar="DATE", help="messages received before DATE (UTC)")
    q.set_defaults(func=_guarded(cmd_replay))
    q = msub.add_parser("add-case", help="add a sample case from a stored message (expected: the active "
                                         "version's output)")
    q.add_argument("name", metavar="NAME")
    q.add_argument("message_id", metavar="MESSAGE_ID")
    q.add_argument("case_name", metavar="CASE_NAME")
    q.set_defaults(func=_guarded(cmd_add_case))

"""`hub evidence verify | export | purge | audit`: the evidence archive and the audit log.

    hub evidence verify                      check every chain (never sealing) and compare it with the last
                                             signed checkpoint; exit 1 naming the first entry that does not
                                             verify in each chain
    hub evidence export CASE [--output DIR]  evidence-<CASE>.zip for a third party (checked with its verify.sh);
                                             recorded in the audit log (EVIDENCE_EXPORTED, the zip's sha256)
    hub evidence purge [--dry-run]           apply the retention rules now
    hub evidence audit [--action A] [--limit N]   the audit log, newest first
"""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hub.cli import console, open_hub


def cmd_verify(args) -> int:
    from hub.evidence.chains import verify_chains
    hub = open_hub()
    with Progress(TextColumn("verifying the {task.description} chain"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def advance(chain: str, done: int, total: int) -> None:
            if chain not in tasks:
                tasks[chain] = progress.add_task(chain, total=total)
            progress.update(tasks[chain], completed=done)
        report = verify_chains(hub, progress=advance)
    for line in report.lines():
        style = "green" if ": OK:" in line else "red" if "FAILED:" in line or line.startswith("  ") else ""
        console.print(f"[{style}]{escape(line)}[/]" if style else escape(line), highlight=False, soft_wrap=True)
    if report.ok:
        console.print("evidence verified: every entry, link and digest checks out", highlight=False)
        return 0
    console.print(f"[red]evidence NOT verified: {escape(str(report.first_failure))}[/]", highlight=False,
                  soft_wrap=True)
    return 1


def cmd_export(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.evidence.chains import seal_pending
    from hub.errors import HubError
    from hub.evidence.export import export_case
    hub = open_hub()
    try:
        result = export_case(hub, args.case, Path(args.output), actor=cli_actor())  # audited: EVIDENCE_EXPORTED
    except HubError as exc:
        console.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        return 1
    seal_pending(hub)  # the EVIDENCE_EXPORTED audit entry, like `hub evidence purge` seals its PURGE
    console.print(f"wrote {result.path} ({result.messages} messages, {result.entries} chain entries of the case "
                  f"in entries {result.span[0]}..{result.span[1]}; sha256 {result.digest}); check it with: "
                  f"unzip {result.path.name} && sh {result.path.stem}/verify.sh", highlight=False, soft_wrap=True)
    return 0


def cmd_purge(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.evidence.chains import seal_pending
    from hub.evidence.retention import purge_expired
    hub = open_hub()
    report = purge_expired(hub, dry_run=args.dry_run, actor=cli_actor())
    if not args.dry_run:
        seal_pending(hub)
    console.print(str(report), highlight=False)
    for name in report.purged[:50]:
        console.print(f"  {escape(name)}", highlight=False, soft_wrap=True)
    if len(report.purged) > 50:
        console.print(f"  … and {len(report.purged) - 50} more", highlight=False)
    return 0


def cmd_audit(args) -> int:
    from sqlalchemy import select
    from hub.store.models import AuditEntry
    hub = open_hub()
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(args.limit)
    if args.action:
        query = query.where(AuditEntry.action == args.action.upper())
    table = Table("seq", "at (UTC)", "actor", "action", "subject", "detail")
    with hub.sessions() as session:
        for entry in session.scalars(query):
            table.add_row(str(entry.chain_seq or "-"), f"{entry.at:%Y-%m-%d %H:%M:%S}", escape(entry.actor),
                          entry.action, escape(entry.subject or ""), escape((entry.detail or "").splitlines()[0]
                                                                            if entry.detail else ""))
    console.print(table)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("evidence", help="verify the evidence chains, export a case, purge, audit log")
    sub = p.add_subparsers(dest="action", required=True)
    q = sub.add_parser("verify", help="check the evidence chains against the last checkpoint; exit 1 naming the "
                                      "first bad entry")
    q.set_defaults(func=cmd_verify)
    q = sub.add_parser("export", help="write evidence-<CASE>.zip, checkable offline with its verify.sh")
    q.add_argument("case", help="the case's correlation id (e.g. LIC-2026-000001)")
    q.add_argument("--output", default=".", help="folder for the zip (default: the current folder)")
    q.set_defaults(func=cmd_export)
    q = sub.add_parser("purge", help="remove payload bytes of final messages past their retention")
    q.add_argument("--dry-run", action="store_true", help="only list what would be purged")
    q.set_defaults(func=cmd_purge)
    q = sub.add_parser("audit", help="the audit log of human actions, newest first")
    q.add_argument("--action", help="only this action (RESEND, TOKEN_CREATED, PAYLOAD_VIEWED, CONFIG_CHANGED, "
                                   "EVIDENCE_EXPORTED, ...)")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_audit)

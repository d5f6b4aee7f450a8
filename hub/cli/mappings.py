"""`hub mappings list | show | versions | diff | add | activate | rollback | export`: the mappings' versions.

    hub mappings list                              every mapping: partner, direction, active version, last change
    hub mappings show NAME                         a mapping's routes, versions and activations
    hub mappings versions NAME                     its versions, oldest first
    hub mappings diff NAME FROM TO                 a unified diff of two versions (numbers or sha256)
    hub mappings add NAME FILE [--comment C]       store FILE as a new version (compiled safely first)
    hub mappings activate NAME VERSION --reason R  activate a version once its checks pass (audited)
    hub mappings rollback NAME --reason R          activate the version active before (audited)
    hub mappings export [--output DIR]             write the active versions back as files (default: mappings/)

NAME is the mapping's path under mappings/ (narsa/licence-request.to-narsa.xsl). A refusal (a stylesheet that
reads outside its folder, a version missing or already active, failing checks) prints why and exits 1.
"""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from hub.cli import console, mapping_checks, open_hub
from hub.errors import HubError


def _fail(exc: HubError) -> int:
    console.print(f"[red]{escape(getattr(exc, 'detail', None) or str(exc))}[/]", highlight=False, soft_wrap=True)
    return 1


def cmd_list(args) -> int:
    from hub.mappings import views
    hub = open_hub()
    table = Table("mapping", "partner", "direction", "active", "sha256", "last change")
    with hub.sessions() as session:
        for item in views.listing(session, hub.config):
            change = item["last_change"] or {}
            table.add_row(escape(item["name"]), item["partner"], item["direction"], str(item["active"]["number"]),
                          item["active"]["sha256"][:12],
                          escape(f"{change.get('at', '')[:19]} {change.get('actor', '')}"))
    console.print(table)
    return 0


def cmd_show(args) -> int:
    from hub.mappings import views
    hub = open_hub()
    try:
        with hub.sessions() as session:
            shown = views.detail(session, hub.config, args.name)
    except HubError as exc:
        return _fail(exc)
    console.print(f"{escape(shown['name'])} ({shown['direction']} {shown['partner']}), active version "
                  f"{shown['active']['number']} sha256 {shown['active']['sha256']}", highlight=False)
    for route in shown["routes"]:
        console.print(f"  used by {escape(route)}", highlight=False)
    for activation in shown["activations"]:
        console.print(escape(f"  {activation['at'][:19]} {activation['from_number']} -> {activation['number']} by "
                             f"{activation['actor']}: {activation['reason']}"), highlight=False)
    return 0


def cmd_versions(args) -> int:
    from hub.mappings import store
    hub = open_hub()
    try:
        with hub.sessions() as session:
            found = store.versions(session, args.name)
    except HubError as exc:
        return _fail(exc)
    table = Table("version", "active", "sha256", "author", "created", "comment")
    for v in found:
        table.add_row(str(v.number), "*" if v.active else "", v.sha256[:12], escape(v.author),
                      v.created_at.isoformat()[:19], escape(v.comment))
    console.print(table)
    return 0


def cmd_diff(args) -> int:
    from hub.mappings import views
    hub = open_hub()
    try:
        with hub.sessions() as session:
            text = views.diff(session, args.name, args.older, args.newer)
    except HubError as exc:
        return _fail(exc)
    console.out(text or "(no difference)", highlight=False)
    return 0


def cmd_add(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.mappings import store
    hub = open_hub()
    try:
        with hub.sessions.begin() as session:
            store.versions(session, args.name)  # a mapping the hub knows
            version = store.add_version(session, args.name, Path(args.file).read_bytes(), author=cli_actor(),
                                        comment=args.comment, mappings_dir=hub.settings.mappings_dir)
    except HubError as exc:
        return _fail(exc)
    console.print(f"version {version.number} of {escape(args.name)}, sha256 {version.sha256}", highlight=False)
    return 0


def cmd_activate(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.mappings import store
    hub = open_hub()
    try:
        with hub.sessions.begin() as session:
            number = store.get(session, args.name, args.version).number
            version = store.activate(session, args.name, number, actor=cli_actor(), reason=args.reason,
                                     settings=hub.settings)
            replay = store.last_replay(session, args.name, number)
    except HubError as exc:
        return _fail(exc)
    if replay:
        console.print(f"last replay ({replay['at'][:19]}): {replay['messages']} messages, {replay['identical']} "
                      f"identical, {replay['different']} different, {replay['invalid']} invalid", highlight=False)
    else:
        console.print("this version was never replayed", highlight=False)
    console.print(f"version {version.number} of {escape(args.name)} is active (sha256 {version.sha256}); every hub "
                  "process uses it within a few seconds", highlight=False)
    return 0


def cmd_rollback(args) -> int:
    from hub.evidence.audit import cli_actor
    from hub.mappings import store
    hub = open_hub()
    try:
        with hub.sessions.begin() as session:
            version = store.rollback(session, args.name, actor=cli_actor(), reason=args.reason, settings=hub.settings)
    except HubError as exc:
        return _fail(exc)
    console.print(f"rolled back: version {version.number} of {escape(args.name)} is active", highlight=False)
    return 0


def cmd_export(args) -> int:
    from hub.mappings import store
    hub = open_hub()
    target = Path(args.output) if args.output else hub.settings.mappings_dir
    with hub.sessions() as session:
        written = store.export(session, target)
    for path in written:
        console.print(f"wrote {escape(str(path))}", highlight=False)
    console.print(f"{len(written)} file(s) rewritten; the others already hold their active version", highlight=False)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("mappings", help="the mappings' versions: list, show, diff, add, try, activate, roll back")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every mapping with its active version").set_defaults(func=cmd_list)
    for name, func, text in (("show", cmd_show, "a mapping's routes, versions and activations"),
                             ("versions", cmd_versions, "a mapping's versions")):
        q = sub.add_parser(name, help=text)
        q.add_argument("name", help="its path under mappings/, e.g. narsa/licence-request.to-narsa.xsl")
        q.set_defaults(func=func)
    q = sub.add_parser("diff", help="a unified diff of two versions")
    q.add_argument("name")
    q.add_argument("older", help="a version's number or sha256")
    q.add_argument("newer", help="a version's number or sha256")
    q.set_defaults(func=cmd_diff)
    q = sub.add_parser("add", help="store a file as a new version (compiled safely first)")
    q.add_argument("name")
    q.add_argument("file", help="the XSLT file")
    q.add_argument("--comment", default="", help="what changed and why")
    q.set_defaults(func=cmd_add)
    q = sub.add_parser("activate", help="activate a version once its sample cases and personal-data check pass")
    q.add_argument("name")
    q.add_argument("version", help="its number or sha256")
    q.add_argument("--reason", required=True, help="why (kept in the audit log)")
    q.set_defaults(func=cmd_activate)
    q = sub.add_parser("rollback", help="activate the version that was active before")
    q.add_argument("name")
    q.add_argument("--reason", required=True, help="why (kept in the audit log)")
    q.set_defaults(func=cmd_rollback)
    q = sub.add_parser("export", help="write the active versions back as files")
    q.add_argument("--output", help="folder to write to (default: the hub's mappings/)")
    q.set_defaults(func=cmd_export)
    mapping_checks.add_check_commands(sub)  # test, preview, replay, add-case: trying a version before it goes live

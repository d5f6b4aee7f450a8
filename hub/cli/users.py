"""`hub users create | list | disable | reset-password`: the console's accounts (hub/access/accounts.py).

    hub users create --role supervisor --username amina --name "Amina El Idrissi"   (password on standard input)
    hub users create --role consular_agent --username karim --name "Karim B." --post FR-PARIS
    hub users list
    hub users disable amina
    hub users reset-password amina                                               (password on standard input)

The password is read from standard input (one line; typed twice and not shown when it is a terminal), never
from the command line, where other users of the machine could read it. Each change is in the audit log. Bad
input exits 2, an unknown account 1.
"""
from __future__ import annotations

import getpass
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.cli import console, open_hub

errors = Console(stderr=True)


def read_password() -> str | None:
    """The new password: typed twice at a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("password again: "):
            errors.print("[red]the two passwords differ[/]")
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_create(args) -> int:
    from hub.access.accounts import create_user
    from hub.cli.tokens import known_posts
    from hub.errors import AccountRequestInvalid
    from hub.evidence import audit
    from hub.evidence.audit import cli_actor
    password = read_password()
    if password is None:
        return 2
    hub = open_hub()
    actor = cli_actor()
    try:
        with hub.sessions.begin() as session:
            user = create_user(session, username=args.username, name=args.name, role=args.role, password=password,
                               created_by=actor, post_code=args.post.upper() if args.post else None,
                               known_posts=known_posts(hub))
            audit.record(session, actor=actor, action="USER_CREATED", subject=user.username,
                         detail=f"{user.role}{' ' + user.post_code if user.post_code else ''} '{user.name}'")
            summary = f"{user.username} ({user.name}, {user.role}{', ' + user.post_code if user.post_code else ''})"
    except AccountRequestInvalid as exc:
        errors.print(f"[red]creating an account: {escape(str(exc))}[/]", highlight=False)
        return 2
    console.print(f"account {escape(summary)} created: sign in at /monitor/", highlight=False)
    return 0


def cmd_list(args) -> int:
    from hub.access.accounts import account_status, list_users
    hub = open_hub()
    table = Table("username", "name", "role", "post", "status", "last sign-in", "created", "created by")
    with hub.sessions() as session:
        for u in list_users(session):
            status = account_status(u)
            table.add_row(u.username, escape(u.name), u.role, u.post_code or "",
                          {"active": "[green]active[/]", "locked": "[yellow]locked[/]",
                           "disabled": "[red]disabled[/]"}[status],
                          f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never",
                          f"{u.created_at:%Y-%m-%d}", escape(u.created_by))
    console.print(table)
    return 0


def _change(args, what: str, action: str, change) -> int:
    from hub.errors import AccountRequestInvalid
    from hub.evidence import audit
    from hub.evidence.audit import cli_actor
    hub = open_hub()
    actor = cli_actor()
    try:
        with hub.sessions.begin() as session:
            user = change(session)
            audit.record(session, actor=actor, action=action, subject=user.username, detail=f"{user.role}")
    except AccountRequestInvalid as exc:
        errors.print(f"[red]{what}: {escape(str(exc))}[/]", highlight=False)
        return 1 if "no account" in str(exc) else 2
    return 0


def cmd_disable(args) -> int:
    from hub.access.accounts import disable_user
    code = _change(args, "disabling an account", "USER_DISABLED", lambda s: disable_user(s, args.username))
    if code == 0:
        console.print(f"account {escape(args.username)} disabled; its sessions are ended", highlight=False)
    return code


def cmd_reset_password(args) -> int:
    from hub.access.accounts import reset_password
    password = read_password()
    if password is None:
        return 2
    code = _change(args, "resetting a password", "USER_PASSWORD_RESET",
                   lambda s: reset_password(s, args.username, password))
    if code == 0:
        console.print(f"password of {escape(args.username)} changed; the account is unlocked and its sessions "
                      "are ended", highlight=False)
    return code


def add_commands(subparsers) -> None:
    from hub.access.tokens import HUMAN_ROLES
    p = subparsers.add_parser("users", help="the console's accounts (people): create, list, disable, reset-password")
    sub = p.add_subparsers(dest="action", required=True)
    q = sub.add_parser("create", help="create an account; the password is read from standard input")
    q.add_argument("--role", required=True, choices=HUMAN_ROLES)
    q.add_argument("--username", required=True, help="what the person types to sign in (e.g. amina)")
    q.add_argument("--name", required=True, help="the person's full name (shown in the console and audit log)")
    q.add_argument("--post", help="consular_agent: the post the account is bound to (e.g. FR-PARIS)")
    q.set_defaults(func=cmd_create)
    q = sub.add_parser("list", help="every account: role, post, status, last sign-in")
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("disable", help="disable an account and end its sessions")
    q.add_argument("username")
    q.set_defaults(func=cmd_disable)
    q = sub.add_parser("reset-password", help="set a new password (read from standard input) and unlock")
    q.add_argument("username")
    q.set_defaults(func=cmd_reset_password)

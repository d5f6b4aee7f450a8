"""`hub tokens create | list | revoke`: the API's identities (hub/access/tokens.py). Each change is in the audit log.

    hub tokens create --role consular_agent --name "Paris desk 3" --post FR-PARIS [--expires-in-days 30]
    hub tokens create --role partner --name "NARSA callbacks" --partner NARSA
    hub tokens list
    hub tokens revoke 3f9a0c1d2e4b5a69

The token is printed once, on standard output alone (so `TOKEN=$(hub tokens create ...)` works); the
warning that it cannot be shown again goes to standard error. Bad input exits 2, an unknown token id 1.
"""
from __future__ import annotations

import argparse
import csv
import getpass
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.cli import console, open_hub

errors = Console(stderr=True)


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): the uid says enough
        import os
        user = f"uid {os.getuid()}"
    return f"cli {user}"


def known_posts(hub) -> set[str]:
    """The open posts: the reference file's and those an administrator created, less the closed ones."""
    from hub.apps import posts_open_now
    from hub.service import INSTALLED_APPS
    path = hub.settings.config_dir / "reference" / "posts.csv"
    with open(path, newline="", encoding="utf-8") as f:
        listed = {row["code"] for row in csv.DictReader(f)}
    with hub.sessions() as session:
        return posts_open_now(session, INSTALLED_APPS, listed)


def known_partners(hub) -> set[str]:
    return {code for code, party in hub.config.parties.items() if party.transport != "local"}


def cmd_create(args) -> int:
    from hub.evidence import audit
    from hub.access.tokens import create_token
    from hub.errors import TokenRequestInvalid
    hub = open_hub()
    actor = cli_actor()
    try:
        with hub.sessions.begin() as session:
            token, secret = create_token(session, role=args.role, name=args.name, created_by=actor,
                                         post_code=args.post.upper() if args.post else None,
                                         partner=args.partner.upper() if args.partner else None,
                                         expires_in_days=args.expires_in_days, known_posts=known_posts(hub),
                                         known_partners=known_partners(hub))
            scope = token.post_code or token.partner
            audit.record(session, actor=actor, action="TOKEN_CREATED", subject=token.token_id,
                         detail=f"{token.role}{' ' + scope if scope else ''} '{token.name}', expires "
                                f"{token.expires_at:%Y-%m-%d}")
    except TokenRequestInvalid as exc:
        errors.print(f"[red]creating a token: {escape(str(exc))}[/]", highlight=False)
        return 2
    finally:
        hub.close()
    errors.print(f"token {token.token_id} ({escape(token.name)}, {token.role}"
                 f"{', ' + scope if scope else ''}) created, valid until {token.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                 "[bold]Copy it now: it is shown only once[/] (only its hash is stored). Send it as "
                 "Authorization: Bearer <token>.", highlight=False)
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    return 0


def cmd_list(args) -> int:
    from hub.access.tokens import list_tokens, token_status
    hub = open_hub()
    table = Table("name", "role", "post / partner", "status", "created", "expires", "last used", "created by")
    table.add_column("token id", no_wrap=True, overflow="fold", min_width=16)  # always whole: operators copy it
    table.columns.insert(0, table.columns.pop())
    try:
        with hub.sessions() as session:
            for t in list_tokens(session):
                status = token_status(t)
                table.add_row(t.token_id, escape(t.name), t.role, t.post_code or t.partner or "",
                              {"active": "[green]active[/]", "expired": "[yellow]expired[/]",
                               "revoked": "[red]revoked[/]"}[status],
                              f"{t.created_at:%Y-%m-%d}", f"{t.expires_at:%Y-%m-%d}",
                              f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never", escape(t.created_by))
    finally:
        hub.close()
    console.print(table)
    return 0


def cmd_revoke(args) -> int:
    from hub.evidence import audit
    from hub.access.tokens import revoke_token
    from hub.errors import TokenRequestInvalid
    hub = open_hub()
    actor = cli_actor()
    try:
        with hub.sessions.begin() as session:
            token = revoke_token(session, args.token_id)
            audit.record(session, actor=actor, action="TOKEN_REVOKED", subject=token.token_id,
                         detail=f"{token.role} '{token.name}'")
            revoked_at = token.revoked_at
    except TokenRequestInvalid as exc:
        errors.print(f"[red]revoking a token: {escape(str(exc))}[/]", highlight=False)
        return 1
    finally:
        hub.close()
    console.print(f"token {escape(args.token_id)} revoked (since {revoked_at:%Y-%m-%d %H:%M:%S} UTC); requests "
                  "carrying it are refused from now on", highlight=False)
    return 0


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if days <= 0:
        raise argparse.ArgumentTypeError(f"{value}: the expiry must be in the future")
    return days


def add_commands(subparsers) -> None:
    from hub.access.tokens import DEFAULT_EXPIRY_DAYS, ROLES
    p = subparsers.add_parser("tokens", help="API tokens: create (shown once), list, revoke")
    sub = p.add_subparsers(dest="action", required=True)
    q = sub.add_parser("create", help="create a token and print it once")
    q.add_argument("--role", required=True, choices=ROLES)
    q.add_argument("--name", required=True, help="who or what uses it (shown in lists and the audit log)")
    q.add_argument("--post", help="consular_agent: the post it is bound to (e.g. FR-PARIS)")
    q.add_argument("--partner", help="partner: the party code it is bound to (e.g. NARSA)")
    q.add_argument("--expires-in-days", type=_days, default=DEFAULT_EXPIRY_DAYS,
                   help=f"default {DEFAULT_EXPIRY_DAYS}")
    q.set_defaults(func=cmd_create)
    q = sub.add_parser("list", help="every token, without secrets: active, expired or revoked")
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("revoke", help="revoke a token now")
    q.add_argument("token_id")
    q.set_defaults(func=cmd_revoke)

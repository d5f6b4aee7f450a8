"""`hub certificates`: every certificate the hub relies on, and how long each remains valid.

    hub certificates            a table: party, role, serial, valid until, days left, status
    hub certificates --json     the same as JSON (one object per certificate)

Rows: the hub's own signing certificate (`role` signing), each party's pinned certificates (pinned)
and CAs (ca). Status: VALID, EXPIRING (valid, but expires within HUB_CERTIFICATE_WARNING_DAYS, 30 by
default), EXPIRED, NOT_YET_VALID.

Exit status, so that a cron job or a monitoring check can run it: 0 when every certificate is VALID;
1 when one is EXPIRING, EXPIRED or NOT_YET_VALID (time to act); 2 on a configuration error.
"""
from __future__ import annotations

import json

from rich.table import Table

from hub.cli import console

STYLE = {"VALID": "green", "EXPIRING": "yellow", "EXPIRED": "bold red", "NOT_YET_VALID": "red"}


def cmd_certificates(args) -> int:
    from hub.trust.certificates import VALID, inventory
    from hub.engine import Hub
    from hub.settings import Settings
    hub = Hub(Settings.from_env())  # no database needed: certificates come from config/ and the PKI folder
    try:
        statuses = inventory(hub)
        warning_days = hub.settings.certificate_warning_days
    finally:
        hub.close()
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        table = Table(title=f"Certificates (EXPIRING = within {warning_days} days)")
        for column in ("party", "role", "serial", "valid until", "days left", "status"):
            table.add_column(column, no_wrap=True, justify="right" if column == "days left" else "left")
        for s in statuses:
            table.add_row(s.party, s.role, f"{s.serial[:8]}…", f"{s.not_after:%Y-%m-%d}", str(s.days_left),
                          f"[{STYLE[s.status]}]{s.status}[/]")
        console.print(table)
        flagged = [s for s in statuses if s.status != VALID]
        if flagged:
            console.print(f"{len(flagged)} certificate(s) need attention: "
                          + ", ".join(f"{s.party} {s.serial[:12]} {s.status}" for s in flagged))
    return 0 if all(s.status == VALID for s in statuses) else 1


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("certificates", help="certificates the hub relies on, their validity and status",
                              description=__doc__.split("\n\n", 1)[1], formatter_class=_raw())
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_certificates)


def _raw():
    import argparse
    return argparse.RawDescriptionHelpFormatter

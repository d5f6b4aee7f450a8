"""The monitor: the web console served by the hub at /monitor/ for supervisors, integration staff, consular
agents and administrators (people signed in with accounts, hub/access/accounts.py).

Server-rendered pages (Jinja2, hub/monitor/templates) in French, Arabic and English (hub/monitor/i18n.py),
with a little JavaScript of its own for live refresh (hub/monitor/static). hub/monitor/web.py is what every
page is made with; each module below serves one part. The data a page shows is also JSON under
/api/v1/monitor/ for other tools (API tokens), computed by the same function."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def routers() -> list:
    """The console's routers (each module's `router`), mounted by hub/api/app.py."""
    from hub.monitor import (alerts_page, dead_letters, login, mappings_page, messages, overview, partners,
                             records)
    return [login.router, overview.router, overview.api, messages.router, dead_letters.router, dead_letters.api, partners.router,
            records.router, records.api, alerts_page.router, alerts_page.api, mappings_page.router]

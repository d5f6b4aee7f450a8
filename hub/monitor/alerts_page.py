"""The alerts in the console (/monitor/alerts) and for other tools (GET /api/v1/monitor/alerts).

Both show what `hub.monitor.alerts.list_alerts` returns: the raised alerts, open ones first (newest first),
then the cleared ones (last cleared first), each with its key, kind, subject, detail, facts and its raised,
notified and cleared times. The page says each in the viewer's language (`alerts.describe`) and refreshes
itself every 15 seconds; the JSON route needs an API token whose role has `alerts:read`.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from hub.access.tokens import Identity
from hub.monitor.alerts import describe, list_alerts
from hub.monitor.i18n import translations
from hub.access.dependencies import allowed
from hub.monitor.web import Viewer, render, viewer

router = APIRouter(prefix="/monitor", include_in_schema=False)
api = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])
PERMISSION = "alerts:read"
CLEARED_SHOWN = 200


def _moment(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def shown(request: Request, seen: Viewer) -> dict:
    """The alerts as the page shows them to `seen`: open and cleared, each said in their language."""
    with request.app.state.hub.reads() as session:
        items = list_alerts(session, limit=CLEARED_SHOWN)
    gettext, formats = translations(seen.lang).gettext, seen.formats
    for item in items:
        item["title"], item["text"] = describe(item, gettext, formats)
        for name in ("seen_at", "raised_at", "notified_at", "cleared_at"):
            item[name] = _moment(item[name])
    return {"open_alerts": [i for i in items if i["open"]], "cleared_alerts": [i for i in items if not i["open"]]}


@router.get("/alerts")
def alerts_page(request: Request, seen: Viewer = Depends(viewer(PERMISSION))):
    return render(request, seen, "alerts.html", **shown(request, seen))


@router.get("/alerts/live")
def alerts_live(request: Request, seen: Viewer = Depends(viewer(PERMISSION))):
    """The list alone, for the page's live refresh."""
    return render(request, seen, "_alerts_list.html", **shown(request, seen))


@api.get("/alerts", summary="The alerts raised: open first, then cleared")
def alerts_json(request: Request, state: Literal["open", "cleared"] | None = Query(
                    None, description="Only the open, or only the cleared alerts"),
                limit: int = Query(200, ge=1, le=1000, description="At most this many"),
                _identity: Identity = Depends(allowed(PERMISSION))):
    """Each alert: `key` (stable per condition, e.g. `unreachable:DGSN`), `kind` (unreachable, dead-letters,
    certificate, overdue, poll), `subject`, `detail`, `facts`, `open`, and its `seen_at`, `raised_at`,
    `notified_at` (every channel told), `notified_via` and `cleared_at` (UTC)."""
    with request.app.state.hub.reads() as session:
        return {"items": list_alerts(session, state=state, limit=limit)}

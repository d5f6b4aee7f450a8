"""The overview: the console's landing page (/monitor/), its live fragment (/monitor/overview/live) and the
same figures as JSON for other tools (GET /api/v1/monitor/overview).

All three show what `overview_for` returns (hub/monitor/figures.py computes the figures). Partner tiles
and the throughput chart need `messages:read` (integration, supervisors, administrators); a consular agent
sees the hub's health and the tiles the apps give them (their post's services). The live fragment is
asked by every open overview every few seconds: its figures are computed at most once per LIVE_SECONDS
for all viewers together, and rendered at most once per LIVE_SECONDS for all viewers who see the same
(language, zone, role, post): fifty open overviews cost the process what a handful do (the page itself
and the JSON are computed at each request).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hub.access.tokens import Identity
from hub.monitor import charts, figures
from hub.access.dependencies import allowed
from hub.monitor.web import SECURITY_HEADERS, Viewer, render, viewer

log = logging.getLogger("hub.monitor")
LIVE_SECONDS = 3.0
LIVE_RENDERINGS = 256     # fragments kept at most (one per language, zone, role and post seen)

router = APIRouter(prefix="/monitor", include_in_schema=False)
api = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])


@dataclass
class Seen:
    """The overview as one viewer may see it."""
    figures: figures.Overview
    services: list[dict]        # [{"template": the app's tiles_template, "tiles": [its tiles for this viewer]}]

    def as_dict(self) -> dict:
        return {**self.figures.as_dict(),
                "services": figures.jsonable([tile for group in self.services for tile in group["tiles"]])}


def overview_for(request: Request, identity: Identity, *, shared: bool = False) -> Seen:
    """The figures `identity` may see: partner figures and the series only with messages:read. `shared`: at
    most LIVE_SECONDS old, computed once for every viewer (the live fragment)."""
    state = request.app.state
    hub = state.hub
    partners = identity.may("messages:read")

    def compute() -> figures.Overview:
        return figures.overview(hub, partners=partners, breakers=getattr(state, "breakers", None),
                                leadership=getattr(state, "leadership", None))
    return Seen(_shared(hub, partners, compute) if shared else compute(), service_tiles(request, identity))


def service_tiles(request: Request, identity: Identity) -> list[dict]:
    """The apps' tiles for this viewer (ConsolePart.tiles), with the template of each app that renders them."""
    groups = []
    for part in getattr(request.app.state, "console_parts", None) or ():
        if part.tiles is None or part.tiles_template is None:
            continue
        tiles = part.tiles(request.app.state.hub, identity) or []
        if tiles:
            groups.append({"template": part.tiles_template, "tiles": tiles})
    return groups


_live: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_live_lock = threading.Lock()


def _shared(hub, partners: bool, compute) -> figures.Overview:
    with _live_lock:
        slot = _live.setdefault(hub, {}).setdefault(partners, {"lock": threading.Lock(), "at": 0.0, "value": None})
    with slot["lock"]:  # one viewer computes; the others wait for it and take the same figures
        if slot["value"] is None or time.monotonic() - slot["at"] >= LIVE_SECONDS:
            slot["value"], slot["at"] = compute(), time.monotonic()
        return slot["value"]


def _page(request: Request, seen: Viewer, template: str, *, shared: bool):
    found = overview_for(request, seen.identity, shared=shared)
    data = found.figures
    chart = None
    if data.series is not None:
        from hub.monitor.i18n import translations
        catalogue = translations(seen.lang)

        def gettext(message: str, **values) -> str:
            text = catalogue.gettext(message)
            return text % values if values else text
        chart = charts.throughput_svg(data.series.hours, data.series.messages_in, data.series.messages_out,
                                      gettext=gettext, rtl=seen.lang == "ar", number=seen.formats.number,
                                      hour_label=lambda hour: hour.astimezone(seen.tz).strftime("%H:%M"))
    return render(request, seen, template, data=data, services=found.services, chart=chart)


@router.get("/")
def overview(request: Request, seen: Viewer = Depends(viewer("console:overview"))):
    return _page(request, seen, "overview.html", shared=False)


@router.get("/overview/live")
async def overview_live(request: Request, seen: Viewer = Depends(viewer("console:overview"))):
    """The overview's figures alone, for console.js to put in place of the page's (data-refresh): the same
    fragment for every viewer who sees the same thing, rendered at most once per LIVE_SECONDS, in a worker
    thread of its own while the others are answered the fragment of a moment ago (open overviews must
    never hold the threads intake answers with, waiting for one another)."""
    key = (seen.lang, seen.tz.key, seen.identity.role, seen.identity.post_code)
    slot = _fragment_slot(request.app.state.hub, key)

    def render_now() -> bytes:
        try:
            body = _page(request, seen, "overview_live.html", shared=True).body
            with _live_lock:
                slot["body"], slot["at"] = body, time.monotonic()
            return body
        finally:
            with _live_lock:
                slot["rendering"] = False

    with _live_lock:
        body, stale = slot["body"], time.monotonic() - slot["at"] >= LIVE_SECONDS
        start = stale and not slot["rendering"]
        if start:
            slot["rendering"] = True
    if body is None:  # the first viewer of its kind waits for the first rendering
        body = await run_in_threadpool(render_now) if start else await _wait_for(slot)
    elif start:
        task = asyncio.get_running_loop().create_task(run_in_threadpool(render_now))
        _background.add(task)
        task.add_done_callback(_rendered)
    return HTMLResponse(body, headers=SECURITY_HEADERS)


_fragments: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_background: set = set()


def _rendered(task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:  # the next request tries again
        log.error("rendering the overview's live fragment failed", exc_info=task.exception())


def _fragment_slot(hub, key: tuple) -> dict:
    with _live_lock:
        kept = _fragments.setdefault(hub, {})
        if key not in kept and len(kept) >= LIVE_RENDERINGS:
            kept.clear()
        return kept.setdefault(key, {"at": 0.0, "body": None, "rendering": False})


async def _wait_for(slot: dict) -> bytes:
    while True:
        with _live_lock:
            if slot["body"] is not None:
                return slot["body"]
            if not slot["rendering"]:
                raise RuntimeError("the overview's fragment could not be rendered")
        await asyncio.sleep(0.05)


@api.get("/overview", summary="The monitor's overview: the hub's health, each partner's figures, the 24 h "
                              "throughput and the apps' service tiles",
         responses={200: {"description": "`partners` and `series` are null for roles without messages:read. "
                                         "Windows are 15m, 1h and 24h; messages_in are those the partner sent, "
                                         "messages_out those addressed to it; times are UTC (ISO 8601); the "
                                         "circuit is the answering process's; `services` are the apps' tiles "
                                         "this caller may see"}})
async def overview_api(request: Request, identity: Identity = Depends(allowed("console:overview"))):
    found = await run_in_threadpool(overview_for, request, identity)
    return found.as_dict()

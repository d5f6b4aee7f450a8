"""The partners (/monitor/partners) and a page per partner: its health (the connector's check(), as /readyz
asks it), its circuit in this process (hub/delivery/breaker.py), its deliveries waiting and dead, its
certificates (expiring first), its last poll, and its last 24 hours hour by hour: deliveries delivered, failed
attempts (retried or dead-lettered) and the 95th percentile of the time from receipt to delivery, as an SVG
chart and the table of the same figures.

Two actions, for the roles with operations:run (integration, administrator); the others see the page without
the buttons, and their POST is refused (403) before anything is done:
- "check now" runs the connector's check() and shows its answer (a check reads, changes nothing: not audited);
- "poll now" (polled partners) takes in what the partner left, as POST /api/v1/partners/{p}/poll does, and is
  written in the audit log (POLL_NOW) with what came of it.

A check does I/O (a TCP connection, an SFTP session), so its answer is kept HEALTH_SECONDS per process and the
list asks the partners whose answer is older side by side, each bounded by its connector's own timeout.

The hour figures read the deliveries whose last due time (deliveries.next_attempt_at, in the outbox's index
with the state) falls in the last 25 hours, and the failure events of those deliveries only."""
from __future__ import annotations

import datetime as dt
import math
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from html import escape
from typing import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from sqlalchemy import func, select

from hub.errors import DeliveryError, NotFound, TryLater, first_line
from hub.evidence import audit
from hub.evidence.timeline import DEAD_LETTERED, RETRY_SCHEDULED
from hub.intake.polling import poll_partner, polling_partners
from hub.monitor.i18n import translations
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from hub.store.models import Delivery, DeliveryState, Event, Message
from hub.trust.certificates import EXPIRED, EXPIRING, NOT_YET_VALID, VALID, inventory

router = APIRouter(prefix="/monitor", include_in_schema=False)

HEALTH_SECONDS = 30.0
CHECK_WAIT = 3.0
HOURS = 24
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Check:
    at: dt.datetime
    ok: bool
    detail: str


_lock = threading.Lock()
_running: set[tuple[int, str]] = set()   # (app state, partner) whose check is under way: one at a time


def _checks(state) -> dict[str, Check]:
    with _lock:
        if not hasattr(state, "partner_checks"):
            state.partner_checks = {}
        return state.partner_checks


def run_check(hub, state, code: str) -> Check:
    """The connector's check() now (it never raises by contract; a defect is shown as a failed check)."""
    try:
        health = hub.connectors[code].check()
        check = Check(dt.datetime.now(dt.timezone.utc), bool(health.ok), str(health.detail)[:500])
    except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, said
        check = Check(dt.datetime.now(dt.timezone.utc), False, f"the check failed: {first_line(exc)}"[:500])
    _checks(state)[code] = check
    return check


def recent_checks(hub, state, codes: list[str]) -> dict[str, Check]:
    """Each partner's check, asked again (side by side) when older than HEALTH_SECONDS. A page waits CHECK_WAIT
    seconds at most: a check still under way then (a partner's host not answering) finishes in the background
    and is shown from the next page on; meanwhile the previous answer, if any, is shown."""
    known = _checks(state)
    now = dt.datetime.now(dt.timezone.utc)
    stale = [c for c in codes if c not in known or (now - known[c].at).total_seconds() > HEALTH_SECONDS]
    with _lock:
        stale = [c for c in stale if (id(state), c) not in _running]
        _running.update((id(state), c) for c in stale)
    if stale:
        pool = ThreadPoolExecutor(max_workers=len(stale), thread_name_prefix="partner-check")
        futures = [pool.submit(_check_in_background, hub, state, code) for code in stale]
        pool.shutdown(wait=False)
        wait(futures, timeout=CHECK_WAIT)
    return {c: known[c] for c in codes if c in known}


def _check_in_background(hub, state, code: str) -> None:
    try:
        run_check(hub, state, code)
    finally:
        with _lock:
            _running.discard((id(state), code))


def circuit_of(state, code: str) -> str:
    breakers = getattr(state, "breakers", None)
    return breakers.state(code) if breakers is not None else UNKNOWN


def delivery_counts(hub) -> dict[str, dict[str, int]]:
    """partner -> {"waiting": PENDING deliveries, "dead": DEAD ones}."""
    with hub.sessions() as session:
        rows = session.execute(select(Delivery.partner, Delivery.state, func.count())
                               .where(Delivery.state.in_((DeliveryState.PENDING, DeliveryState.DEAD)))
                               .group_by(Delivery.partner, Delivery.state)).all()
    counts: dict[str, dict[str, int]] = {}
    for partner, state, n in rows:
        which = "waiting" if state == DeliveryState.PENDING else "dead"
        counts.setdefault(partner, {"waiting": 0, "dead": 0})[which] = n
    return counts


STATUS_ORDER = {EXPIRED: 0, NOT_YET_VALID: 1, EXPIRING: 2, VALID: 3}


def certificates_of(hub, code: str) -> list:
    """The certificates the hub relies on for `code`, expiring first."""
    return sorted((s for s in inventory(hub) if s.party == code), key=lambda s: (s.days_left, s.serial))


def shown_certificate(certificates: list):
    """The one certificate a list shows for a party: its longest-valid usable one (during a rotation the new
    one is what the party relies on), else, when none is usable, the one closest to being so."""
    usable = [s for s in certificates if s.status in (VALID, EXPIRING)]
    if usable:
        return max(usable, key=lambda s: s.days_left)
    return min(certificates, key=lambda s: (STATUS_ORDER.get(s.status, 9), -s.days_left), default=None)


def partner_rows(hub, state) -> list[dict]:
    codes = sorted(hub.config.parties)
    checks = recent_checks(hub, state, codes)
    counts = delivery_counts(hub)
    polled = polling_partners(hub)
    statuses = inventory(hub)
    rows = []
    for code in codes:
        party = hub.config.parties[code]
        certificates = sorted((s for s in statuses if s.party == code), key=lambda s: s.days_left)
        rows.append({"code": code, "name": party.name, "transport": party.transport, "check": checks.get(code),
                     "circuit": circuit_of(state, code), **counts.get(code, {"waiting": 0, "dead": 0}),
                     "certificate": shown_certificate(certificates), "polled": code in polled,
                     "last_poll": hub.last_polls.get(code)})
    return rows


# -- the last 24 hours ---------------------------------------------------------------------------------------

@dataclass
class Hour:
    start: dt.datetime
    delivered: int = 0
    failed: int = 0
    p95_seconds: float | None = None


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (q in 0..1) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def hourly(hub, code: str, now: dt.datetime | None = None) -> list[Hour]:
    """The last HOURS hours of deliveries to `code`, oldest first (the last one the hour under way)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    current = now.replace(minute=0, second=0, microsecond=0)
    hours = [Hour(current - dt.timedelta(hours=HOURS - 1 - i)) for i in range(HOURS)]
    since = hours[0].start
    window = (Delivery.partner == code, Delivery.next_attempt_at >= since - dt.timedelta(hours=1),
              Delivery.state.in_(DeliveryState.ALL))
    with hub.sessions() as session:
        delivered = session.execute(select(Delivery.delivered_at, Message.received_at)
                                    .join(Message, Message.id == Delivery.message_pk)
                                    .where(*window, Delivery.state == DeliveryState.DELIVERED,
                                           Delivery.delivered_at >= since)).all()
        failures = session.scalars(select(Event.at).join(Delivery, (Delivery.id == Event.delivery_id)
                                                         & (Delivery.message_pk == Event.message_pk))
                                   .where(*window, Event.kind.in_((RETRY_SCHEDULED, DEAD_LETTERED)),
                                          Event.at >= since)).all()

    def index(moment: dt.datetime) -> int | None:
        i = int((moment - since).total_seconds() // 3600)
        return i if 0 <= i < HOURS else None

    latencies: list[list[float]] = [[] for _ in hours]
    for delivered_at, received_at in delivered:
        i = index(delivered_at)
        if i is not None:
            hours[i].delivered += 1
            latencies[i].append(max(0.0, (delivered_at - received_at).total_seconds()))
    for at in failures:
        i = index(at)
        if i is not None:
            hours[i].failed += 1
    for hour, values in zip(hours, latencies):
        hour.p95_seconds = percentile(values, 0.95)
    return hours


# colours with at least 3:1 contrast against white; failures also differ by their hatching, not colour alone
DELIVERED_COLOUR, FAILED_COLOUR = "#1f5fa8", "#b3401a"
WIDTH, HEIGHT, AXIS, MARGIN, TOP, BOTTOM = 760, 220, 56, 16, 16, 44


def hours_svg(hours: list[Hour], *, gettext: Callable[..., str], hour_label: Callable[[dt.datetime], str],
              number: Callable = str, rtl: bool = False, element_id: str = "partner-hours") -> Markup:
    """Delivered and failed per hour as bars side by side (failed ones hatched); a <title> and a <desc> say
    the totals in words, and the page's table beside it has every figure. Right to left, time runs from the
    right and the value axis is on the right; the SVG's own text direction stays left to right (positions are
    computed here), so numbers and times read as they should."""
    _ = gettext
    plot_width, plot_height = WIDTH - AXIS - MARGIN, HEIGHT - TOP - BOTTOM
    plot_start = MARGIN if rtl else AXIS
    step = _step(max([h.delivered for h in hours] + [h.failed for h in hours] + [1]))
    peak = 4 * step
    slot = plot_width / max(1, len(hours))
    bar = max(2.0, slot * 0.36)

    def along(offset: float, size: float = 0.0) -> float:
        """The x of something `offset` from the start of time (at the left, or at the right when rtl)."""
        return round(plot_start + (plot_width - offset - size if rtl else offset), 1)

    def y(value: int) -> float:
        return round(TOP + plot_height - plot_height * value / peak, 1)

    title = _("Deliveries per hour, last 24 hours")
    desc = _("%(delivered)s delivered and %(failed)s failed attempts in the last 24 hours.",
             delivered=number(sum(h.delivered for h in hours)), failed=number(sum(h.failed for h in hours)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT + 24}" '
           f'width="100%" aria-labelledby="{element_id}-title {element_id}-desc" font-size="12" '
           f'font-family="inherit" direction="ltr">',
           f'<title id="{element_id}-title">{escape(title)}</title>',
           f'<desc id="{element_id}-desc">{escape(desc)}</desc>',
           f'<defs><pattern id="{element_id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
           f'<line x1="0" y1="0" x2="0" y2="6" stroke="{FAILED_COLOUR}" stroke-width="4"/></pattern></defs>',
           '<g aria-hidden="true">']
    label_x, anchor = (plot_start + plot_width + 6, "start") if rtl else (plot_start - 6, "end")
    for tick in range(5):
        ty = y(step * tick)
        out.append(f'<line x1="{plot_start}" x2="{plot_start + plot_width}" y1="{ty}" y2="{ty}" stroke="#d0d0d0" '
                   f'stroke-width="1"/>')
        out.append(f'<text x="{label_x}" y="{ty + 4}" text-anchor="{anchor}" fill="#3a3a3a">'
                   f'{escape(number(step * tick))}</text>')
    for i, hour in enumerate(hours):
        for which, value, fill, stroke in ((0, hour.delivered, DELIVERED_COLOUR, DELIVERED_COLOUR),
                                           (1, hour.failed, f"url(#{element_id}-hatch)", FAILED_COLOUR)):
            if value:
                top = y(value)
                out.append(f'<rect x="{along(i * slot + slot * 0.12 + which * bar, bar)}" y="{top}" '
                           f'width="{round(bar, 1)}" height="{round(TOP + plot_height - top, 1)}" fill="{fill}" '
                           f'stroke="{stroke}" stroke-width="1"/>')
        if i % 3 == 0 or i == len(hours) - 1:
            out.append(f'<text x="{along((i + 0.5) * slot)}" y="{TOP + plot_height + 16}" text-anchor="middle" '
                       f'fill="#3a3a3a">{escape(hour_label(hour.start))}</text>')
    legend_y = HEIGHT + 8
    items = ((_("Delivered"), DELIVERED_COLOUR, DELIVERED_COLOUR),
             (_("Failed attempts"), f"url(#{element_id}-hatch)", FAILED_COLOUR))
    for n, (label, fill, stroke) in enumerate(items):
        box = along(n * 220, 14)
        out.append(f'<rect x="{box}" y="{legend_y - 10}" width="14" height="14" fill="{fill}" stroke="{stroke}"/>')
        text_x, text_anchor = (box - 6, "end") if rtl else (box + 20, "start")
        out.append(f'<text x="{text_x}" y="{legend_y + 2}" text-anchor="{text_anchor}" fill="#1a1a1a">'
                   f'{escape(label)}</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def _step(value: int) -> int:
    """A grid step of 1, 2 or 5 x 10^k such that four steps reach `value`."""
    quarter = max(1, math.ceil(value / 4))
    exponent = 10 ** int(math.floor(math.log10(quarter)))
    for factor in (1, 2, 5, 10):
        if factor * exponent >= quarter:
            return factor * exponent
    return quarter


# -- pages -------------------------------------------------------------------------------------------------

def known_partner(hub, code: str) -> str:
    code = code.upper()
    if code not in hub.config.parties:
        raise NotFound(f"no partner {code[:20]!r}")
    return code


@router.get("/partners")
def partners_page(request: Request, seen: Viewer = Depends(viewer("messages:read"))):
    rows = partner_rows(request.app.state.hub, request.app.state)
    return render(request, seen, "partners.html", rows=rows)


@router.get("/partners/{code}")
def partner_page(request: Request, code: str, checked: int | None = None, polled: str | None = None,
                 seen: Viewer = Depends(viewer("messages:read"))):
    hub, state = request.app.state.hub, request.app.state
    code = known_partner(hub, code)
    party = hub.config.parties[code]
    check = recent_checks(hub, state, [code]).get(code)
    hours = hourly(hub, code)
    delivered = sum(h.delivered for h in hours)
    failed = sum(h.failed for h in hours)
    catalogue = translations(seen.lang)

    def gettext(message: str, **values) -> str:
        return catalogue.gettext(message) % values if values else catalogue.gettext(message)
    chart = hours_svg(hours, gettext=gettext, hour_label=lambda moment: moment.astimezone(seen.tz).strftime("%H:%M"),
                      number=seen.formats.number, rtl=seen.lang == "ar")
    polled_partners = polling_partners(hub)
    return render(request, seen, "partner.html", code=code, party=party, check=check,
                  circuit=circuit_of(state, code), counts=delivery_counts(hub).get(code, {"waiting": 0, "dead": 0}),
                  certificates=certificates_of(hub, code), hours=hours, chart=chart, delivered=delivered,
                  failed=failed, polled=code in polled_partners, poll_interval=polled_partners.get(code),
                  last_poll=hub.last_polls.get(code), checked=bool(checked),
                  poll_result=polled if polled in ("ok", "failed") else None,
                  may_operate=seen.may("operations:run"))


@router.post("/partners/{code}/check")
async def check_now(request: Request, code: str, seen: Viewer = Depends(csrf_checked("operations:run"))):
    hub = request.app.state.hub
    code = known_partner(hub, code)
    await run_in_threadpool(run_check, hub, request.app.state, code)
    return RedirectResponse(url(f"/monitor/partners/{code}", checked=1), status_code=303)


@router.post("/partners/{code}/poll")
async def poll_now(request: Request, code: str, seen: Viewer = Depends(csrf_checked("operations:run"))):
    hub = request.app.state.hub
    code = known_partner(hub, code)
    if code not in polling_partners(hub):
        raise NotFound(f"{code} is not a partner the hub polls (polled: "
                       f"{', '.join(sorted(polling_partners(hub))) or 'none'})")
    try:
        counts = await run_in_threadpool(poll_partner, hub, code)
        outcome, detail = "ok", ", ".join(f"{n} {what}" for what, n in counts.items())
    except (DeliveryError, TryLater) as exc:
        outcome, detail = "failed", f"poll failed: {getattr(exc, 'reason', None) or first_line(exc)}"
    with hub.sessions.begin() as session:
        audit.record(session, actor=seen.identity.actor, action="POLL_NOW", subject=code, detail=detail[:1000])
    return RedirectResponse(url(f"/monitor/partners/{code}", polled=outcome), status_code=303)

"""The overview's figures: per partner and for the hub itself, read from the engine's tables and this
process's state, as plain data (the page, its live fragment and GET /api/v1/monitor/overview all show
what `overview()` returns).

Fast at a million stored messages: every query reads an index, never a table's worth of rows.

- Time windows (15 min, 1 h, 24 h and the 24 hourly buckets of the chart) become id boundaries first:
  one probe per boundary on messages(received_at) gives the first message received at or after it
  (ids grow with received_at, give or take the messages committed in the same instant). The counts
  per sender and per recipient are then ranges of (sender, id) and (recipient, id, sender), read from
  the index only, all buckets in one pass.
- Dead letters and waiting deliveries per partner: deliveries(partner, state, delivered_at); the last
  success is that index's last DELIVERED entry; the last failure the newest of deliveries(partner, id)
  whose last_error is set (a partial index: failed deliveries only).
- Delivery latency p95: received_at -> delivered_at of the deliveries of the last hour's messages (the
  newest LATENCY_SAMPLE of them at most, so a busy hour costs no more than a quiet one).
- Reachability is each connector's `check()` (what /readyz asks): it does I/O (a TCP connection, an
  SFTP session), so it runs in the background and is kept REACHABILITY_SECONDS; a page never waits
  for a partner that is down for more than REACHABILITY_WAIT seconds (the tile then says "checking").

Messages "in" from a partner are those it sent (sender); "out" are those addressed to it (recipient).
Circuits live in each hub process's memory (hub/delivery/breaker.py): the state shown is this process's.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field

from sqlalchemy import bindparam, func, literal, select, text, union_all

from hub.cluster.leader import current_leader, process_name
from hub.intake.polling import polling_partners
from hub.store.models import Delivery, DeliveryState, Message
from hub.trust.certificates import EXPIRED, EXPIRING, NOT_YET_VALID, VALID, inventory

WINDOWS = {"15m": dt.timedelta(minutes=15), "1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24)}
HOURS = 24                       # the chart: hourly buckets, the last one the hour under way
LATENCY_WINDOW = dt.timedelta(hours=1)
LATENCY_SAMPLE = 2000            # deliveries at most in the latency percentile
REACHABILITY_SECONDS = 10.0      # a connector's check() is asked again after this long
REACHABILITY_WAIT = 1.0          # how long a page waits for a check under way
LEADER_SECONDS = 10.0            # who leads is asked again after this long (a connection of its own)
WAITING_AMBER = dt.timedelta(minutes=5)   # a delivery waiting longer than this turns a tile amber
NO_ID = 2 ** 62                  # the boundary of a window no message has reached yet

GREEN, AMBER, RED = "green", "amber", "red"


def N_(message: str) -> str:
    """A reason, in English: the catalogue has it (hub/monitor/catalogue.py), the page translates it."""
    return message


# -- what the figures are ----------------------------------------------------------------------------

@dataclass
class Failure:
    at: dt.datetime | None
    reason: str
    state: str                   # the delivery's state: PENDING (will be tried again) or DEAD


@dataclass
class PartnerFigures:
    code: str
    transport: str
    reachable: bool | None       # None: not known yet (the first check is under way)
    reachable_detail: str
    circuit: str                 # closed | open | half-open | unknown (this process's circuit)
    messages_in: dict[str, int]  # window -> messages the partner sent
    messages_out: dict[str, int]  # window -> messages addressed to the partner
    outbox: int                  # deliveries waiting
    oldest_waiting_at: dt.datetime | None
    oldest_waiting_seconds: float | None
    dead_letters: int
    latency_p95_seconds: float | None   # received -> delivered, last hour
    latency_sample: int
    last_success_at: dt.datetime | None
    last_failure: Failure | None
    certificate_days_left: int | None   # of its longest-valid usable certificate; None: none usable
    certificate_status: str | None       # VALID | EXPIRING | EXPIRED | NOT_YET_VALID (the worst it relies on)
    polled: bool
    last_poll_at: dt.datetime | None
    last_poll_ok: bool | None
    last_poll_detail: str | None
    status: str = GREEN          # green | amber | red
    reasons: list[str] = field(default_factory=list)   # msgids of why it is not green (translated when shown)


@dataclass
class HubFigures:
    database_ok: bool
    database_detail: str
    database_latency_ms: float | None
    leader: str | None           # "<host>:<pid>" of the leading process, None when none leads
    this_process: str
    this_process_leads: bool | None
    # the hub processes on this database ("<host>:<pid>"), from each one's leadership connection (PostgreSQL
    # only: None on SQLite, where a process that does not lead leaves no trace)
    processes: list[str] | None = None
    status: str = GREEN
    reasons: list[str] = field(default_factory=list)


@dataclass
class Series:
    """The chart: hourly buckets (start times, UTC), per partner counts in and out."""
    hours: list[dt.datetime]
    messages_in: dict[str, list[int]]
    messages_out: dict[str, list[int]]


@dataclass
class Overview:
    at: dt.datetime
    hub: HubFigures
    partners: list[PartnerFigures] | None   # None: the viewer may not see them
    series: Series | None
    took_ms: float = 0.0

    def as_dict(self) -> dict:
        return jsonable(asdict(self))


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value


# -- the whole overview ------------------------------------------------------------------------------

def overview(hub, *, partners: bool = True, breakers=None, leadership=None, now: dt.datetime | None = None) -> Overview:
    """The hub's health, and with `partners` every partner's figures and the 24 h series.
    `breakers`: this process's circuits (hub.delivery.breaker.Breakers) when it runs delivery workers;
    `leadership`: this process's hub.cluster.leader.Leadership when it runs the scheduled jobs' election."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.timezone.utc)
    health = hub_figures(hub, leadership)
    result = Overview(at=now, hub=health, partners=None, series=None)
    if partners and health.database_ok:
        result.partners, result.series = partner_figures(hub, breakers=breakers, now=now)
    result.took_ms = (time.perf_counter() - started) * 1e3
    return result


def monitored_partners(hub) -> list[str]:
    """The partners with a tile: every party but those consumed inside the hub's process (transport local)."""
    return [code for code, party in hub.config.parties.items() if party.transport != "local"]


def partner_figures(hub, *, breakers=None, now: dt.datetime) -> tuple[list[PartnerFigures], Series]:
    codes = monitored_partners(hub)
    hours = [_hour(now) - dt.timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    reach = reachability(hub, codes)
    circuits = breakers.states() if breakers is not None else {}
    certificates = _certificates(hub, now)
    polled = polling_partners(hub)
    with hub.reads() as session:
        connection = session.connection()
        counts_in, counts_out, series = _window_counts(connection, codes, now, hours)
        waiting = _waiting(connection)
        dead = _dead(connection, codes)
        success = _last_success(connection, codes)
        failures = _last_failures(connection, codes)
        latency = _latency(connection, now)
    figures = []
    for code in codes:
        health = reach.get(code)
        oldest = waiting.get(code, (0, None))[1]
        poll = hub.last_polls.get(code)
        cert_days, cert_status = certificates.get(code, (None, None))
        sample = latency.get(code, [])
        figures.append(PartnerFigures(
            code=code, transport=hub.config.parties[code].transport,
            reachable=None if health is None else health.ok,
            reachable_detail="" if health is None else health.detail,
            circuit=circuits.get(code, "unknown") if breakers is not None else "unknown",
            messages_in=counts_in[code], messages_out=counts_out[code],
            outbox=waiting.get(code, (0, None))[0], oldest_waiting_at=oldest,
            oldest_waiting_seconds=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
            dead_letters=dead.get(code, 0),
            latency_p95_seconds=percentile(sample, 0.95), latency_sample=len(sample),
            last_success_at=success.get(code), last_failure=failures.get(code),
            certificate_days_left=cert_days, certificate_status=cert_status,
            polled=code in polled, last_poll_at=poll.at if poll else None, last_poll_ok=poll.ok if poll else None,
            last_poll_detail=poll.detail if poll else None))
    for partner in figures:
        partner.status, partner.reasons = judge(partner)
    return figures, Series(hours=hours, messages_in={c: series[("in", c)] for c in codes},
                           messages_out={c: series[("out", c)] for c in codes})


def judge(p: PartnerFigures) -> tuple[str, list[str]]:
    """Red, amber or green, with the reasons in words (msgids, translated where shown)."""
    red, amber = [], []
    if p.reachable is False:
        red.append(N_("unreachable"))
    elif p.reachable is None:
        amber.append(N_("reachability not known yet"))
    if p.circuit == "open":
        red.append(N_("circuit open"))
    elif p.circuit == "half-open":
        amber.append(N_("circuit half-open"))
    if p.certificate_status in (EXPIRED, NOT_YET_VALID) or p.certificate_days_left is None:
        red.append(N_("no valid certificate"))
    elif p.certificate_status == EXPIRING:
        amber.append(N_("certificate expiring"))
    if p.last_poll_ok is False:
        red.append(N_("last poll failed"))
    if p.dead_letters:
        amber.append(N_("dead letters waiting"))
    if p.oldest_waiting_seconds is not None and p.oldest_waiting_seconds > WAITING_AMBER.total_seconds():
        amber.append(N_("deliveries waiting long"))
    return (RED if red else AMBER if amber else GREEN), red + amber


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# -- queries -------------------------------------------------------------------------------------------

def _boundaries(connection, moments: list[dt.datetime]) -> list[int]:
    """For each moment, the id of the first message received at or after it (NO_ID when none was), in one
    statement of index probes on messages(received_at); made non-decreasing."""
    probes = [select(literal(i).label("k"),
                     select(Message.id).where(Message.received_at >= bindparam(f"t{i}", moment, type_=Message.received_at.type))
                     .order_by(Message.received_at).limit(1).scalar_subquery().label("id"))
              for i, moment in enumerate(moments)]
    rows = dict(connection.execute(union_all(*probes)).all())
    found, lowest = [], NO_ID
    for i in reversed(range(len(moments))):  # a later moment's boundary is never below an earlier one's
        value = rows.get(i)
        lowest = min(lowest, value if value is not None else NO_ID)
        found.append(lowest)
    return list(reversed(found))


def _window_counts(connection, codes: list[str], now: dt.datetime, hours: list[dt.datetime]):
    """Counts in and out per partner for each window, and the hourly series, from two index-only passes."""
    # the moments, in order: the 24 h window's start, each hour's start, the 1 h and 15 min windows' starts
    moments = sorted({now - WINDOWS["24h"], *hours, now - WINDOWS["1h"], now - WINDOWS["15m"]})
    ids = _boundaries(connection, moments)
    # a row's bucket k: the last moment whose boundary it reached (k = index in `moments`)
    if connection.dialect.name == "postgresql":  # a binary search over the boundaries
        bucket, params = "width_bucket(id, CAST(:bounds AS bigint[])) - 1", {"bounds": ids}
    else:
        bucket = "CASE " + " ".join(f"WHEN id >= :b{k} THEN {k}" for k in reversed(range(len(moments)))) + " ELSE -1 END"
        params = {f"b{k}": ids[k] for k in range(len(moments))}
    per_bucket: dict[tuple[str, str], dict[int, int]] = {}
    # one SELECT per partner and direction (an equality on the index's first column and a range on id: the
    # planner reads (sender, id) or (recipient, id, sender) alone, where an IN list may send it to the table)
    parts, params["b0"] = [], ids[0]
    for direction, column in (("in", "sender"), ("out", "recipient")):
        for i, code in enumerate(codes):
            params[f"{direction}{i}"] = code
            parts.append(f"SELECT '{direction}' AS direction, {column} AS code, {bucket} AS k, count(*) AS n "
                         f"FROM messages WHERE {column} = :{direction}{i} AND id >= :b0 GROUP BY {column}, k")
    if parts:
        for direction, code, k, n in connection.execute(text(" UNION ALL ".join(parts)), params):
            per_bucket.setdefault((direction, code), {})[k] = n
    counts = {"in": {}, "out": {}}
    series: dict[tuple[str, str], list[int]] = {}
    for direction in ("in", "out"):
        for code in codes:
            found = per_bucket.get((direction, code), {})
            counts[direction][code] = {name: sum(n for k, n in found.items() if moments[k] >= now - span)
                                       for name, span in WINDOWS.items()}
            series[(direction, code)] = [sum(n for k, n in found.items()
                                             if hour <= moments[k] < hour + dt.timedelta(hours=1)) for hour in hours]
    return counts["in"], counts["out"], series


def _waiting(connection) -> dict[str, tuple[int, dt.datetime | None]]:
    """Per partner: deliveries waiting, and when the message of the oldest of them was received."""
    d, m = Delivery.__table__, Message.__table__
    rows = connection.execute(select(d.c.partner, func.count(), func.min(d.c.message_pk))
                              .where(d.c.state == DeliveryState.PENDING).group_by(d.c.partner)).all()
    oldest = {}
    pks = [pk for _, _, pk in rows if pk is not None]
    if pks:
        oldest = dict(connection.execute(select(m.c.id, m.c.received_at).where(m.c.id.in_(pks))).all())
    return {partner: (n, oldest.get(pk)) for partner, n, pk in rows}


def _dead(connection, codes: list[str]) -> dict[str, int]:
    """Dead letters per partner: a range of deliveries(partner, state, ...) each, read from the index."""
    d = Delivery.__table__
    if not codes:
        return {}
    probes = [select(literal(code).label("partner"),
                     select(func.count()).select_from(d).where(d.c.partner == code, d.c.state == DeliveryState.DEAD)
                     .scalar_subquery().label("n")) for code in codes]
    return dict(connection.execute(union_all(*probes)).all())


def _last_success(connection, codes: list[str]) -> dict[str, dt.datetime | None]:
    d = Delivery.__table__
    probes = [select(literal(code).label("partner"),
                     select(func.max(d.c.delivered_at)).where(d.c.partner == code, d.c.state == DeliveryState.DELIVERED)
                     .scalar_subquery().label("at")) for code in codes]
    return {code: at for code, at in connection.execute(union_all(*probes)).all()} if codes else {}


def _last_failures(connection, codes: list[str]) -> dict[str, Failure]:
    """The newest delivery of each partner that failed (its last_error), and when its last failure was
    recorded on the message's timeline."""
    d = Delivery.__table__
    probes = [select(literal(code).label("partner"),
                     select(func.max(d.c.id)).where(d.c.partner == code, d.c.last_error.is_not(None))
                     .scalar_subquery().label("id")) for code in codes]
    newest = {code: id_ for code, id_ in connection.execute(union_all(*probes)).all() if id_ is not None} if codes else {}
    if not newest:
        return {}
    rows = connection.execute(text(
        "SELECT d.id, d.partner, d.state, d.last_error, "
        "(SELECT max(e.at) FROM events e WHERE e.message_pk = d.message_pk AND e.delivery_id = d.id "
        "AND e.kind IN ('RETRY_SCHEDULED', 'DEAD_LETTERED')) AS at "
        "FROM deliveries d WHERE d.id IN :ids").bindparams(bindparam("ids", expanding=True)).columns(
        at=Message.received_at.type), {"ids": list(newest.values())}).all()
    return {row.partner: Failure(at=row.at, reason=row.last_error or "", state=row.state) for row in rows}


def _latency(connection, now: dt.datetime) -> dict[str, list[float]]:
    """Seconds from received to delivered of the deliveries of the last hour's messages (the newest
    LATENCY_SAMPLE), per partner."""
    since = _boundaries(connection, [now - LATENCY_WINDOW])[0]
    if since >= NO_ID:
        return {}
    rows = connection.execute(text(
        "SELECT d.partner, m.received_at, d.delivered_at FROM deliveries d JOIN messages m ON m.id = d.message_pk "
        "WHERE d.message_pk >= :since AND d.state = 'DELIVERED' ORDER BY d.message_pk DESC LIMIT :limit").columns(
        received_at=Message.received_at.type, delivered_at=Message.received_at.type),
        {"since": since, "limit": LATENCY_SAMPLE}).all()
    found: dict[str, list[float]] = {}
    for partner, received, delivered in rows:
        if received is not None and delivered is not None:
            found.setdefault(partner, []).append(max(0.0, (delivered - received).total_seconds()))
    return found


def _certificates(hub, now: dt.datetime) -> dict[str, tuple[int | None, str | None]]:
    """Per party: the days left of its longest-valid usable certificate, and the worst status of those it
    relies on (an expiring one during a rotation shows as expiring)."""
    order = {VALID: 0, EXPIRING: 1, NOT_YET_VALID: 2, EXPIRED: 3}
    found: dict[str, tuple[int | None, str | None]] = {}
    for status in inventory(hub, now):
        days, worst = found.get(status.party, (None, None))
        if status.status in (VALID, EXPIRING):
            days = status.days_left if days is None else max(days, status.days_left)
        if worst is None or order[status.status] > order[worst]:
            worst = status.status
        found[status.party] = (days, worst)
    return found


# -- the hub's own health -------------------------------------------------------------------------------

def hub_figures(hub, leadership=None) -> HubFigures:
    started = time.perf_counter()
    try:
        with hub.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        ok, detail, latency = True, hub.engine.dialect.name, (time.perf_counter() - started) * 1e3
    except Exception as exc:  # any database failure: shown, not raised
        ok, detail, latency = False, type(exc).__name__, None
    leader = _cached(hub, "leader", LEADER_SECONDS, lambda: current_leader(hub.settings.database_url))
    figures = HubFigures(database_ok=ok, database_detail=detail, database_latency_ms=latency,
                         leader=leader if not isinstance(leader, Exception) else None,
                         this_process=process_name(),
                         this_process_leads=None if leadership is None else bool(leadership.is_leader))
    processes = _cached(hub, "processes", LEADER_SECONDS, lambda: _processes(hub))
    figures.processes = None if isinstance(processes, Exception) else processes
    if not ok:
        figures.status, figures.reasons = RED, [N_("database unreachable")]
    elif figures.leader is None and not isinstance(leader, Exception):
        figures.status, figures.reasons = AMBER, [N_("no process leads")]
    return figures


def _processes(hub) -> list[str] | None:
    """Every hub process keeps a connection named `hub-leader <host>:<pid>` or `hub-follower <host>:<pid>`
    (hub/cluster/leader.py) on PostgreSQL."""
    if hub.engine.dialect.name != "postgresql":
        return None
    with hub.read_engine.connect() as connection:
        names = connection.execute(text(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND (application_name LIKE 'hub-leader %' OR application_name LIKE 'hub-follower %')")).scalars().all()
    return sorted(name.split(" ", 1)[1] for name in names)


# -- caches kept per hub --------------------------------------------------------------------------------

_caches: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_of(hub) -> dict:
    with _caches_lock:
        cache = _caches.get(hub)
        if cache is None:
            cache = _caches[hub] = {"lock": threading.Lock(), "values": {}, "checks": {}}
        return cache


def _cached(hub, key: str, seconds: float, compute):
    """compute() at most every `seconds` (its exception is kept as the value)."""
    cache = _cache_of(hub)
    with cache["lock"]:
        at, value = cache["values"].get(key, (None, None))
    if at is not None and time.monotonic() - at < seconds:
        return value
    try:
        value = compute()
    except Exception as exc:
        value = exc
    with cache["lock"]:
        cache["values"][key] = (time.monotonic(), value)
    return value


class _Check:
    def __init__(self):
        self.health = None
        self.at = 0.0
        self.running: threading.Event | None = None


def reachability(hub, codes: list[str]) -> dict:
    """Each partner's connector check() (connectors.base.Health), at most REACHABILITY_SECONDS old, run in
    the background: waits at most REACHABILITY_WAIT for checks under way; a partner without an answer yet
    is left out (not known)."""
    cache = _cache_of(hub)
    waits = []
    with cache["lock"]:
        for code in codes:
            check = cache["checks"].setdefault(code, _Check())
            stale = time.monotonic() - check.at >= REACHABILITY_SECONDS
            if stale and check.running is None:
                check.running = threading.Event()
                threading.Thread(target=_run_check, args=(hub, cache, code, check), daemon=True,
                                 name=f"monitor-check-{code}").start()
            if check.health is None and check.running is not None:
                waits.append(check.running)
    deadline = time.monotonic() + REACHABILITY_WAIT
    for event in waits:
        event.wait(max(0.0, deadline - time.monotonic()))
    with cache["lock"]:
        return {code: cache["checks"][code].health for code in codes if cache["checks"][code].health is not None}


def _run_check(hub, cache, code: str, check: _Check) -> None:
    try:
        health = hub.connectors[code].check()
    except Exception as exc:  # a check that raises says the partner cannot be reached
        from connectors.base import Health
        health = Health(False, f"{type(exc).__name__}: {exc}"[:300])
    with cache["lock"]:
        check.health, check.at = health, time.monotonic()
        running, check.running = check.running, None
    running.set()

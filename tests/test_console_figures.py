"""The overview's figures (hub/monitor/figures.py) over rows written at known times, and the throughput
chart (hub/monitor/charts.py). The page and the API showing them: tests/test_console_overview.py."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from lxml import etree

from conftest import wait_for
from hub.monitor import charts, figures
from hub.store.models import Delivery, Event, Message

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _message(session, n: int, sender: str, recipient: str, ago: dt.timedelta, state: str = "DELIVERED") -> Message:
    at = NOW - ago
    message = Message(message_id=f"FIG-{n}", sender=sender, recipient=recipient, type="LicenceAuthenticationRequest",
                      correlation_id=f"CASE-{n}", state=state, digest=hashlib.sha256(b"%d" % n).hexdigest(),
                      receipt=b"<r/>", received_at=at, updated_at=at)
    session.add(message)
    session.flush()
    return message


@pytest.mark.both_databases
def test_windows_series_outbox_dead_letters_and_failures(hub):
    with hub.sessions.begin() as session:
        # NARSA sent four (30 h, 3 h, 30 min and 5 min ago); two went to NARSA (2 h and 2 min ago); one to DGSN
        # (40 min ago). Written in the order they arrived: ids grow with received_at, as intake writes them.
        rows = {}
        for n, (sender, recipient, ago, state) in enumerate(sorted([
                ("NARSA", "REGISTRY", dt.timedelta(hours=30), "DELIVERED"),
                ("NARSA", "REGISTRY", dt.timedelta(hours=3), "DELIVERED"),
                ("NARSA", "REGISTRY", dt.timedelta(minutes=30), "DELIVERED"),
                ("NARSA", "REGISTRY", dt.timedelta(minutes=5), "DELIVERED"),
                ("REGISTRY", "NARSA", dt.timedelta(hours=2), "DELIVERED"),
                ("REGISTRY", "NARSA", dt.timedelta(minutes=2), "ACCEPTED"),
                ("REGISTRY", "DGSN", dt.timedelta(minutes=40), "DEAD")], key=lambda row: -row[2])):
            rows[(recipient, ago)] = _message(session, n, sender, recipient, ago, state)
        delivered, waiting = rows[("NARSA", dt.timedelta(hours=2))], rows[("NARSA", dt.timedelta(minutes=2))]
        dead = rows[("DGSN", dt.timedelta(minutes=40))]
        session.add(Delivery(message_pk=delivered.id, partner="NARSA", state="DELIVERED", attempts=1,
                             next_attempt_at=delivered.received_at,
                             delivered_at=delivered.received_at + dt.timedelta(seconds=4)))
        session.add(Delivery(message_pk=waiting.id, partner="NARSA", state="PENDING", attempts=1,
                             next_attempt_at=NOW, last_error="HTTP 503 from NARSA"))
        failed = Delivery(message_pk=dead.id, partner="DGSN", state="DEAD", attempts=3, next_attempt_at=NOW,
                          last_error="SOAP fault: unknown citizen")
        session.add(failed)
        session.flush()
        session.add(Event(message_pk=dead.id, delivery_id=failed.id, at=NOW - dt.timedelta(minutes=39),
                          kind="DEAD_LETTERED", detail="gave up"))

    codes = figures.monitored_partners(hub)   # the partners' checks run in the background: wait for them
    wait_for(lambda: len(figures.reachability(hub, codes)) == len(codes), what="every partner's check")
    overview = figures.overview(hub, now=NOW)
    by_code = {p.code: p for p in overview.partners}
    assert set(by_code) == {"DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"}   # not REGISTRY (local)
    narsa, dgsn = by_code["NARSA"], by_code["DGSN"]
    assert narsa.messages_in == {"15m": 1, "1h": 2, "24h": 3}
    assert narsa.messages_out == {"15m": 1, "1h": 1, "24h": 2}
    assert dgsn.messages_out == {"15m": 0, "1h": 1, "24h": 1} and dgsn.messages_in == {"15m": 0, "1h": 0, "24h": 0}
    latest = -1 if NOW.minute >= 5 else -2   # the message of 5 minutes ago: this hour's, or the last one's
    assert sum(overview.series.messages_in["NARSA"]) == 3 and overview.series.messages_in["NARSA"][latest] >= 1
    assert overview.series.messages_in["NARSA"][figures.HOURS - 4] == 1   # the one of 3 h ago, in its hour
    assert len(overview.series.hours) == figures.HOURS and overview.series.hours[-1] == NOW.replace(minute=0, second=0)
    assert narsa.outbox == 1 and narsa.oldest_waiting_at == waiting.received_at
    assert narsa.last_success_at == delivered.received_at + dt.timedelta(seconds=4)
    assert narsa.latency_p95_seconds is None            # delivered 2 h ago: outside the latency window
    assert narsa.last_failure.reason == "HTTP 503 from NARSA" and narsa.last_failure.state == "PENDING"
    assert dgsn.dead_letters == 1 and narsa.dead_letters == 0
    assert dgsn.last_failure.reason == "SOAP fault: unknown citizen"
    assert dgsn.last_failure.at == NOW - dt.timedelta(minutes=39)
    assert dgsn.status == figures.RED and "dead letters waiting" in dgsn.reasons   # no sandbox runs: unreachable
    assert narsa.certificate_days_left > 300 and narsa.certificate_status == "VALID"
    assert overview.hub.database_ok and overview.hub.database_latency_ms is not None
    # no process of this test leads or follows: none on PostgreSQL, not knowable on SQLite
    assert overview.hub.processes == ([] if hub.engine.dialect.name == "postgresql" else None)
    assert overview.as_dict()["partners"][0]["messages_in"]["24h"] >= 0   # JSON-able throughout


def test_a_viewer_without_partner_figures_gets_none_and_an_empty_history_gives_zeros(hub):
    assert figures.overview(hub, partners=False).partners is None
    every = figures.overview(hub, now=NOW)
    assert all(p.messages_in == {"15m": 0, "1h": 0, "24h": 0} and p.outbox == 0 for p in every.partners)


def _partner(**changes) -> figures.PartnerFigures:
    base = dict(code="NARSA", transport="rest", reachable=True, reachable_detail="", circuit="closed",
                messages_in={}, messages_out={}, outbox=0, oldest_waiting_at=None, oldest_waiting_seconds=None,
                dead_letters=0, latency_p95_seconds=None, latency_sample=0, last_success_at=None, last_failure=None,
                certificate_days_left=400, certificate_status="VALID", polled=False, last_poll_at=None,
                last_poll_ok=None, last_poll_detail=None)
    return figures.PartnerFigures(**{**base, **changes})


@pytest.mark.parametrize("changes, status, reason", [
    ({}, "green", None),
    ({"reachable": False}, "red", "unreachable"),
    ({"circuit": "open"}, "red", "circuit open"),
    ({"circuit": "half-open"}, "amber", "circuit half-open"),
    ({"certificate_status": "EXPIRING", "certificate_days_left": 12}, "amber", "certificate expiring"),
    ({"certificate_status": "EXPIRED", "certificate_days_left": None}, "red", "no valid certificate"),
    ({"last_poll_ok": False}, "red", "last poll failed"),
    ({"oldest_waiting_seconds": 301.0}, "amber", "deliveries waiting long"),
    ({"reachable": None}, "amber", "reachability not known yet"),
])
def test_a_tile_says_why_it_is_not_green(changes, status, reason):
    assert figures.judge(_partner(**changes)) == (status, [reason] if reason else [])


def test_percentile_is_nearest_rank():
    assert figures.percentile([], 0.95) is None
    assert figures.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert figures.percentile([3.0], 0.95) == 3.0


@pytest.mark.parametrize("rtl", [False, True])
def test_the_chart_is_labelled_svg_that_mirrors_right_to_left(rtl):
    hours = [NOW.replace(minute=0, second=0) - dt.timedelta(hours=23 - i) for i in range(24)]
    svg = charts.throughput_svg(hours, {"NARSA": list(range(24)), "DGSN": [0] * 24},
                                {"NARSA": [1] * 24, "DGSN": [2] * 24}, gettext=lambda s, **kw: s % kw if kw else s,
                                hour_label=lambda h: h.strftime("%H:00"), rtl=rtl)
    tree = etree.fromstring(str(svg).encode())
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert tree.get("role") == "img" and tree.get("aria-labelledby") == "throughput-title throughput-desc"
    assert "NARSA 276" in tree.find("s:desc", ns).text and "DGSN 48" in tree.find("s:desc", ns).text
    first_line = tree.find(".//s:polyline", ns).get("points").split()
    first_x, last_x = float(first_line[0].split(",")[0]), float(first_line[-1].split(",")[0])
    assert (first_x > last_x) if rtl else (first_x < last_x)   # time runs right to left in Arabic
    dashes = {line.get("stroke-dasharray") for line in tree.findall(".//s:g[@class='legend']/s:line", ns)}
    assert len(dashes) == 2                               # told apart without colour
    assert charts.nice_ceiling(0) == 4 and charts.nice_ceiling(23) == 25 and charts.nice_ceiling(101) == 200

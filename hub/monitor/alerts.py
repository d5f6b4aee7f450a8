"""Alert rules: what must be told to the people watching the hub, raised once, notified once, cleared.

The rules, each finding conditions with a stable key (`<kind>:<subject>`):

    unreachable:<PARTNER>            the partner's connection check fails (the one `/readyz` runs: a TCP
                                     connection to its endpoint, its SFTP folders), or its deliveries keep
                                     failing with transient errors (a delivery still PENDING whose last
                                     attempt failed: 5xx, 429, timeouts, refused connections). Raised only
                                     once that has held for HUB_ALERT_UNREACHABLE_MINUTES, so a restart or
                                     one lost connection does not page anyone.
    dead-letters:<PARTNER>           the partner has dead-lettered deliveries (until they are resent or
                                     cancelled); the count and the last reason in the detail
    certificate:<PARTY>:<serial>     a certificate the hub relies on (its own, a pinned one, a CA) expires
                                     within HUB_ALERT_CERTIFICATE_DAYS, or has expired
    overdue:<SERVICE>:<reference>    a case past its service's deadline, as the apps report it
                                     (`ConsolePart.overdue`, hub/apps.py)
    poll:<PARTNER>                   the last poll of a polling partner (CDG's SFTP) failed in this process

State lives in the `alerts` table (hub/store/models.py Alert), one row per episode of a condition: the
rules find a condition, a row is written (`seen_at`); once it has held long enough it is raised
(`raised_at`) and the notifiers are told (`notified_at`, hub/monitor/notify.py) — once, however many
evaluations still find it; when the rules no longer find it the row is cleared (`cleared_at`), and the
condition found again later is a new episode, raised and notified again. A condition that goes away before
it was raised leaves nothing. A rule that could not look (an app's overdue list failed; a partner not yet
polled by this process) leaves its alerts as they are rather than clearing them.

`evaluate(hub, ...)` is the scheduled job of the leading process (hub/service.py): idempotent, safe to run
twice or late (a partial unique index keeps one open row per key; a run that loses that race changes
nothing and the next one catches up). A notification that fails is logged and tried again at the next
evaluation, channel by channel: a webhook that is down does not hold up the e-mail.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from connectors.base import LocalConsumer
from hub.errors import first_line
from hub.intake.polling import polling_partners
from hub.store.db import utcnow
from hub.store.models import Alert, Delivery, DeliveryState
from hub.trust.certificates import inventory

log = logging.getLogger("hub.monitor.alerts")

UNREACHABLE, DEAD_LETTERS, CERTIFICATE, OVERDUE, POLL = "unreachable", "dead-letters", "certificate", "overdue", "poll"
KINDS = (UNREACHABLE, DEAD_LETTERS, CERTIFICATE, OVERDUE, POLL)
DETAIL_LIMIT = 1000

OverdueSource = Callable[[object], list[dict]]   # fn(hub) -> items past their deadline (hub/apps.py ConsolePart)


@dataclass(frozen=True)
class Condition:
    """One thing a rule found. `hold_seconds`: how long it must have been found before it is raised."""

    kind: str
    subject: str
    detail: str
    facts: dict = field(default_factory=dict)
    hold_seconds: float = 0.0
    key_suffix: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}{self.key_suffix}"[:200]


@dataclass
class Observation:
    """What the rules found, and the keys of the alerts rules could not look at this time (a key, or a
    prefix ending in ':' for all of a kind)."""

    conditions: list[Condition] = field(default_factory=list)
    unsure: set[str] = field(default_factory=set)

    def is_unsure(self, key: str) -> bool:
        return any(key == unsure or (unsure.endswith(":") and key.startswith(unsure)) for unsure in self.unsure)


@dataclass
class Outcome:
    """What an evaluation changed: keys raised and cleared, channels that failed."""

    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    notified: dict[str, list[str]] = field(default_factory=dict)   # channel -> keys told
    failed: list[str] = field(default_factory=list)                # channels that failed this time
    ok: bool = True


# -- the rules ------------------------------------------------------------------------------------------

def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds") if moment else None


def connection_checks(hub) -> dict[str, tuple[bool, str]]:
    """partner -> (ok, detail) of each connector's check, run side by side (each takes up to its timeout).
    Parties served in the hub's own process (the registry) are not partners one can lose."""
    partners = {code: connector for code, connector in hub.connectors.items()
                if not isinstance(connector, LocalConsumer)}
    if not partners:
        return {}

    def check(code: str) -> tuple[bool, str]:
        try:
            health = partners[code].check()
            return bool(health.ok), str(health.detail)
        except Exception as exc:  # a check must not raise; one that does is reported, not fatal
            return False, first_line(exc)

    with ThreadPoolExecutor(max_workers=min(8, len(partners)), thread_name_prefix="alert-check") as pool:
        return dict(zip(partners, pool.map(check, partners)))


def failing_deliveries(session) -> dict[str, tuple[int, str]]:
    """partner -> (deliveries whose last attempt failed and that wait for a retry, the newest one's error)."""
    rows = session.execute(
        select(Delivery.partner, func.count(), func.max(Delivery.id))
        .where(Delivery.state == DeliveryState.PENDING, Delivery.attempts > 0, Delivery.last_error.is_not(None))
        .group_by(Delivery.partner)).all()
    return {partner: (count, session.scalar(select(Delivery.last_error).where(Delivery.id == newest)) or "")
            for partner, count, newest in rows}


def dead_letters(session) -> dict[str, tuple[int, str]]:
    """partner -> (dead-lettered deliveries, the newest one's reason)."""
    rows = session.execute(select(Delivery.partner, func.count(), func.max(Delivery.id))
                           .where(Delivery.state == DeliveryState.DEAD).group_by(Delivery.partner)).all()
    return {partner: (count, session.scalar(select(Delivery.last_error).where(Delivery.id == newest)) or "")
            for partner, count, newest in rows}


def unreachable_rule(hub, session, checks: dict[str, tuple[bool, str]]) -> list[Condition]:
    hold = hub.settings.alert_unreachable_minutes * 60
    failing = failing_deliveries(session)
    found = []
    for partner in sorted(set(checks) | set(failing)):
        ok, check_detail = checks.get(partner, (True, ""))
        count, error = failing.get(partner, (0, ""))
        if ok and not count:
            continue
        reasons = []
        if not ok:
            reasons.append(f"connection check failed: {check_detail}")
        if count:
            reasons.append(f"{count} deliveries waiting for a retry, the last error: {error}")
        found.append(Condition(UNREACHABLE, partner, "; ".join(reasons)[:DETAIL_LIMIT], hold_seconds=hold,
                               facts={"partner": partner, "check_failed": not ok, "check": check_detail[:300],
                                      "failing_deliveries": count, "error": error[:300]}))
    return found


def dead_letter_rule(session) -> list[Condition]:
    return [Condition(DEAD_LETTERS, partner, f"{count} dead-lettered deliveries; the last: {reason}"[:DETAIL_LIMIT],
                      facts={"partner": partner, "count": count, "reason": reason[:300]})
            for partner, (count, reason) in sorted(dead_letters(session).items())]


def certificate_rule(hub, now: dt.datetime) -> list[Condition]:
    days = hub.settings.alert_certificate_days
    found = []
    for status in inventory(hub, now):
        if status.not_after - now > dt.timedelta(days=days):
            continue
        name = status.common_name or status.subject
        expired = status.not_after <= now
        what = "expired on" if expired else "expires on"
        found.append(Condition(
            CERTIFICATE, status.party, key_suffix=f":{status.serial}",
            detail=f"{status.role} certificate {name} (serial {status.serial}, {status.path or 'in memory'}) "
                   f"{what} {status.not_after:%Y-%m-%d %H:%M} UTC ({status.days_left} days)"[:DETAIL_LIMIT],
            facts={"party": status.party, "role": status.role, "name": name, "serial": status.serial,
                   "path": status.path, "not_after": _iso(status.not_after), "days_left": status.days_left,
                   "expired": expired}))
    return found


def overdue_rule(hub, sources: Sequence[OverdueSource], observation: Observation) -> list[Condition]:
    found = []
    for source in sources:
        try:
            items = list(source(hub))
        except Exception:  # an app's defect: its overdue alerts stay as they are until it answers again
            log.exception("the overdue cases could not be read; their alerts are left as they are")
            observation.unsure.add(f"{OVERDUE}:")
            continue
        for item in items:
            reference, service = str(item.get("reference", "")), str(item.get("service", ""))
            if not reference:
                continue
            deadline = item.get("deadline_at")
            deadline_text = f"{deadline:%Y-%m-%d %H:%M} UTC" if isinstance(deadline, dt.datetime) else str(deadline)
            found.append(Condition(
                OVERDUE, f"{service}:{reference}",
                detail=f"case {reference} ({service}, post {item.get('post_code') or '-'}, status "
                       f"{item.get('status') or '-'}) is past its deadline of {deadline_text}"[:DETAIL_LIMIT],
                facts={"reference": reference, "service": service, "post_code": item.get("post_code"),
                       "status": item.get("status"), "url": item.get("url"),
                       "deadline_at": _iso(deadline) if isinstance(deadline, dt.datetime) else deadline}))
    return found


def poll_rule(hub, observation: Observation) -> list[Condition]:
    found = []
    for partner in sorted(polling_partners(hub)):
        last = hub.last_polls.get(partner)
        if last is None:  # not polled by this process yet (it has just started, or just become the leader)
            observation.unsure.add(f"{POLL}:{partner}")
        elif not last.ok:
            found.append(Condition(POLL, partner, f"the poll at {last.at:%Y-%m-%d %H:%M:%S} UTC failed: "
                                                  f"{last.detail}"[:DETAIL_LIMIT],
                                   facts={"partner": partner, "at": _iso(last.at), "reason": last.detail[:300]}))
    return found


def observe(hub, session, *, overdue: Sequence[OverdueSource] = (), now: dt.datetime | None = None,
            checks: dict[str, tuple[bool, str]] | None = None) -> Observation:
    """Every rule, once. `checks`: the connectors' checks when already run (else they are run now)."""
    now = now or utcnow()
    observation = Observation()
    observation.conditions += unreachable_rule(hub, session, connection_checks(hub) if checks is None else checks)
    observation.conditions += dead_letter_rule(session)
    observation.conditions += certificate_rule(hub, now)
    observation.conditions += overdue_rule(hub, overdue, observation)
    observation.conditions += poll_rule(hub, observation)
    return observation


# -- the state ----------------------------------------------------------------------------------------

def apply(session, observation: Observation, now: dt.datetime) -> Outcome:
    """Bring the `alerts` table in line with what the rules found (in the caller's transaction)."""
    outcome = Outcome()
    current = {alert.key: alert for alert in session.scalars(select(Alert).where(Alert.cleared_at.is_(None)))}
    found: set[str] = set()
    for condition in observation.conditions:
        key = condition.key
        if key in found:
            continue
        found.add(key)
        alert = current.get(key)
        facts = json.dumps(condition.facts, ensure_ascii=False, default=str)
        if alert is None:
            alert = Alert(key=key, kind=condition.kind, subject=condition.subject[:200], seen_at=now,
                          detail=condition.detail, facts=facts, notified_via="")
            session.add(alert)
        else:
            alert.detail, alert.facts = condition.detail, facts
        if alert.raised_at is None and (now - alert.seen_at).total_seconds() >= condition.hold_seconds:
            alert.raised_at = now
            outcome.raised.append(key)
    for key, alert in current.items():
        if key in found or observation.is_unsure(key):
            continue
        if alert.raised_at is None:
            session.delete(alert)  # it went away before it was raised: nothing to tell
        else:
            alert.cleared_at = now
            outcome.cleared.append(key)
    return outcome


def purge_cleared(session, now: dt.datetime, keep_days: int) -> int:
    return session.execute(delete(Alert).where(Alert.cleared_at < now - dt.timedelta(days=keep_days))).rowcount


def as_dict(alert: Alert) -> dict:
    try:
        facts = json.loads(alert.facts or "{}")
    except ValueError:
        facts = {}
    return {"key": alert.key, "kind": alert.kind, "subject": alert.subject, "detail": alert.detail,
            "facts": facts, "open": alert.cleared_at is None, "seen_at": _iso(alert.seen_at),
            "raised_at": _iso(alert.raised_at), "notified_at": _iso(alert.notified_at),
            "notified_via": [c for c in (alert.notified_via or "").split(",") if c],
            "cleared_at": _iso(alert.cleared_at)}


def list_alerts(session, *, state: str | None = None, limit: int = 200) -> list[dict]:
    """The raised alerts, open ones first (newest first), then the cleared ones (last cleared first).
    `state`: "open" or "cleared" only. What the console's page and /api/v1/monitor/alerts show."""
    query = select(Alert).where(Alert.raised_at.is_not(None))
    if state == "open":
        query = query.where(Alert.cleared_at.is_(None))
    elif state == "cleared":
        query = query.where(Alert.cleared_at.is_not(None))
    query = query.order_by(Alert.cleared_at.is_not(None), Alert.cleared_at.desc(), Alert.raised_at.desc(),
                           Alert.id.desc()).limit(limit)
    return [as_dict(alert) for alert in session.scalars(query)]


# -- in words ----------------------------------------------------------------------------------------

def describe(alert: dict, _: Callable[[str], str], formats) -> tuple[str, str]:
    """(title, sentence) of an alert (as `as_dict` makes it) in the language of `_` (gettext), dates by
    `formats` (hub/monitor/i18n.py Formats): for the console's page and the e-mails."""
    facts, kind = alert.get("facts") or {}, alert.get("kind")

    def when(value) -> str:
        try:
            return formats.when(dt.datetime.fromisoformat(value))
        except (TypeError, ValueError):
            return str(value or "—")

    if kind == UNREACHABLE:
        title = _("Partner %(partner)s unreachable") % {"partner": alert["subject"]}
        parts = []
        if facts.get("check_failed"):
            parts.append(_("Its connection check fails: %(check)s") % {"check": facts.get("check", "")})
        if facts.get("failing_deliveries"):
            parts.append(_("Deliveries waiting for a retry: %(count)s; the last error: %(error)s")
                         % {"count": facts["failing_deliveries"], "error": facts.get("error", "")})
        return title, " ".join(parts) or alert.get("detail", "")
    if kind == DEAD_LETTERS:
        return (_("Dead letters for %(partner)s") % {"partner": alert["subject"]},
                _("Dead-lettered deliveries: %(count)s; the last reason: %(reason)s")
                % {"count": facts.get("count", "?"), "reason": facts.get("reason", "")})
    if kind == CERTIFICATE:
        values = {"party": facts.get("party", alert["subject"]), "name": facts.get("name", ""),
                  "serial": facts.get("serial", ""), "date": when(facts.get("not_after")),
                  "days": facts.get("days_left", "?")}
        if facts.get("expired"):
            return (_("Certificate of %(party)s expired") % values,
                    _("The certificate %(name)s (serial %(serial)s) expired on %(date)s.") % values)
        return (_("Certificate of %(party)s expiring") % values,
                _("The certificate %(name)s (serial %(serial)s) expires on %(date)s, in %(days)s days.") % values)
    if kind == OVERDUE:
        values = {"reference": facts.get("reference", alert["subject"]), "service": facts.get("service", ""),
                  "post": facts.get("post_code") or "—", "status": facts.get("status") or "—",
                  "deadline": when(facts.get("deadline_at"))}
        return (_("Case %(reference)s past its deadline") % values,
                _("Service %(service)s, post %(post)s, status %(status)s: the deadline was %(deadline)s.") % values)
    if kind == POLL:
        return (_("Polling %(partner)s failed") % {"partner": alert["subject"]},
                _("The poll at %(at)s failed: %(reason)s") % {"at": when(facts.get("at")),
                                                               "reason": facts.get("reason", "")})
    return alert.get("key", ""), alert.get("detail", "")


# -- notifying ----------------------------------------------------------------------------------------

def notify_pending(hub, notifiers: Sequence, outcome: Outcome, now: dt.datetime) -> None:
    """Tell each notifier about the raised, open alerts it has not been told of yet (one call per channel
    for all of them); a channel that fails is tried again at the next evaluation, the others go on."""
    if not notifiers:
        return
    with hub.reads() as session:
        owed = list(session.scalars(select(Alert).where(Alert.raised_at.is_not(None), Alert.cleared_at.is_(None),
                                                        Alert.notified_at.is_(None)).order_by(Alert.id)))
        alerts = {alert.id: (as_dict(alert), set(alert.notified_via.split(",")) - {""}) for alert in owed}
    if not alerts:
        return
    told: dict[int, set[str]] = {alert_id: set(done) for alert_id, (_, done) in alerts.items()}
    for notifier in notifiers:
        batch = [(alert_id, alert) for alert_id, (alert, done) in alerts.items() if notifier.channel not in done]
        if not batch:
            continue
        try:
            notifier.send([alert for _, alert in batch])
        except Exception as exc:  # logged without secrets (notifiers never put them in their errors)
            log.warning("alert notification by %s failed (%s); it is tried again at the next evaluation",
                        notifier.channel, first_line(exc))
            outcome.failed.append(notifier.channel)
            continue
        outcome.notified[notifier.channel] = [alert["key"] for _, alert in batch]
        for alert_id, _ in batch:
            told[alert_id].add(notifier.channel)
    channels = {notifier.channel for notifier in notifiers}
    with hub.sessions.begin() as session:
        for alert_id, done in told.items():
            alert = session.get(Alert, alert_id)
            if alert is None:
                continue
            alert.notified_via = ",".join(sorted(done))
            if channels <= done:
                alert.notified_at = now


# -- the job ------------------------------------------------------------------------------------------

_evaluating = threading.Lock()


def evaluate(hub, *, overdue: Sequence[OverdueSource] = (), notifiers: Sequence = (),
             now: dt.datetime | None = None) -> Outcome:
    """One evaluation: the rules, the table, the notifications (`notifiers`: hub/monitor/notify.py
    configured_notifiers). Never raises: a failure is logged and the outcome says `ok=False` (the
    scheduler counts the run as an error)."""
    with _evaluating:  # one at a time in this process; other processes are kept out by the unique index
        outcome = Outcome()
        try:
            checks = connection_checks(hub)  # before the transaction: checks may take seconds
            now = now or utcnow()
            with hub.sessions.begin() as session:
                observation = observe(hub, session, overdue=overdue, now=now, checks=checks)
                outcome = apply(session, observation, now)
                purge_cleared(session, now, hub.settings.alert_keep_days)
        except IntegrityError:  # another evaluation wrote the same alert first: the next run goes on from there
            log.info("alerts evaluated by another process at the same time; this run changed nothing")
            outcome = Outcome(ok=False)
        except DBAPIError as exc:
            log.warning("evaluating the alerts failed (%s); the next evaluation tries again", first_line(exc))
            return Outcome(ok=False)
        except Exception:
            log.exception("evaluating the alerts failed; the next evaluation tries again")
            return Outcome(ok=False)
        for key in outcome.raised:
            log.warning("alert raised: %s", key)
        for key in outcome.cleared:
            log.info("alert cleared: %s", key)
        try:
            notify_pending(hub, notifiers, outcome, now or utcnow())
        except Exception:
            log.exception("sending the alerts' notifications failed; the next evaluation tries again")
            outcome.ok = False
        outcome.ok = outcome.ok and not outcome.failed
        return outcome


def overdue_sources(parts: Iterable) -> list[OverdueSource]:
    """The `overdue` functions of the apps' console parts (hub/apps.py ConsolePart)."""
    return [part.overdue for part in parts if getattr(part, "overdue", None) is not None]

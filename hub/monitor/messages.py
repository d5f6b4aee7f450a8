"""Messages in the console: the search (and its CSV export), a message's page, its payloads and its case's
evidence bundle, and resending a dead message.

    GET  /monitor/messages                         search: state, type, partner, sender, case, received from/to
                                                   (in the viewer's zone), message id; newest first, by cursor
    GET  /monitor/messages.csv                     the same search as CSV (UTF-8 with BOM, streamed, capped)
    GET  /monitor/messages/{sender}/{id}           summary, timeline (each event's digest and seal), deliveries
                                                   and their attempts, receipts, the partner's answer
    GET  /monitor/messages/{sender}/{id}/live      its deliveries and timeline now (the page's live part)
    GET  /monitor/messages/{sender}/{id}/payload/{part}[?partner=]   one payload, pretty-printed
                                                   (messages:payload; each view audited PAYLOAD_VIEWED)
    GET  /monitor/messages/{sender}/{id}/evidence  the evidence bundle of its case (audited EVIDENCE_EXPORTED)
    POST /monitor/messages/{sender}/{id}/resend    its dead deliveries back in the outbox (audited RESEND)

A message is named by its sender and id (ids are unique per sender only). The search is the API's
(hub/messages.py `search_messages`, behind GET /api/v1/messages too), so each page reads an index range
whatever the history's size; a payload is read through `view_payload`, as GET /api/v1/messages/{id}/payload
reads it, which writes the audit entry, and only when its own page is opened (the message's page only links
to it, so opening the message views nothing)."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import defer
from starlette.background import BackgroundTask

from hub.messages import (COUNT_LIMIT, MAX_ID, Filters, Found, received_id_range, search_messages,
                          view_payload)
from hub.errors import HubError, InputError, NotFound
from hub.evidence import timeline
from hub.monitor.catalogue import N_
from hub.monitor.i18n import translations
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from hub.store.models import Delivery, Event, Message, MessageState

router = APIRouter(prefix="/monitor", include_in_schema=False)
reader = viewer("messages:read")  # one dependency object: FastAPI resolves it once per request

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CSV_CAP = 100_000      # rows of one export: a larger result is cut (its last line says so); narrow the search
CSV_PAGE = 1_000       # rows read per query while streaming
SHOWN_BYTES = 2_000_000  # a payload larger than this is shown cut (the evidence bundle holds it whole)

STATE_LABELS = {MessageState.ACCEPTED: N_("accepted"), MessageState.DELIVERED: N_("delivered"),
                MessageState.DEAD: N_("dead"), "PENDING": N_("pending")}
STATE_CLASSES = {MessageState.DELIVERED: "state-good", MessageState.DEAD: "state-bad",
                 MessageState.ACCEPTED: "state-warn", "PENDING": "state-warn"}
EVENT_LABELS = {
    timeline.RECEIVED: N_("Received"), timeline.VALIDATED: N_("Validated against its schema"),
    timeline.VERIFIED: N_("Signature verified"), timeline.MAPPED_IN: N_("Mapped to the canonical format"),
    timeline.CORRELATED: N_("Matched to the message it answers"), timeline.ACCEPTED: N_("Accepted, receipt signed"),
    timeline.QUEUED: N_("Queued for delivery"), timeline.DUPLICATE: N_("Received again (duplicate)"),
    timeline.CLAIMED: N_("Taken by a worker"), timeline.SENT: N_("Sent"),
    timeline.PARTNER_RECEIPT: N_("Partner's answer kept"), timeline.SENT_AGAIN: N_("Sent again"),
    timeline.ANSWERED: N_("Partner's answer taken in"), timeline.RETRY_SCHEDULED: N_("Failed, will retry"),
    timeline.DEAD_LETTERED: N_("Dead-lettered"), timeline.RESENT: N_("Resent by an operator"),
    timeline.PURGED: N_("Payload purged (retention)")}
# what the digest of an event of this kind is the sha256 of
VOUCHES = {timeline.RECEIVED: N_("the bytes as received"), timeline.DUPLICATE: N_("the bytes as received"),
           timeline.VERIFIED: N_("the canonical form"), timeline.MAPPED_IN: N_("the canonical form"),
           timeline.ACCEPTED: N_("the hub's receipt"), timeline.SENT: N_("the bytes sent to %(partner)s"),
           timeline.PARTNER_RECEIPT: N_("the answer of %(partner)s"),
           timeline.ANSWERED: N_("the answer of %(partner)s")}
ATTEMPT_OUTCOMES = (timeline.SENT, timeline.SENT_AGAIN, timeline.RETRY_SCHEDULED, timeline.DEAD_LETTERED)
CSV_COLUMNS = (N_("Received"), N_("Message id"), N_("Sender"), N_("Recipient"), N_("Type"), N_("Case"),
               N_("In reply to"), N_("State"), N_("SHA-256"), N_("Last change"))
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?", re.ASCII)


# -- the search -------------------------------------------------------------------------------------------

class SearchForm:
    """The search form's fields as given (shown back in the form) and as a search (`filters`), or what is wrong
    with them (`errors`: field -> what to fix, in the viewer's language; `filters` is then None)."""

    def __init__(self, seen: Viewer, *, state: str | None, type: str | None, partner: str | None,
                 sender: str | None, case: str | None, received_from: str | None, received_to: str | None,
                 id: str | None):
        self.values = {name: (value or "").strip() for name, value in (
            ("state", state), ("type", type), ("partner", partner), ("sender", sender), ("case", case),
            ("received_from", received_from), ("received_to", received_to), ("id", id))}
        v = self.values
        gettext = translations(seen.lang).gettext
        self.errors: dict[str, str] = {}
        if v["state"] and v["state"].upper() not in MessageState.ALL:
            self.errors["state"] = gettext("State: choose one of the list.")
        moments = {}
        for name, label, end in (("received_from", N_("Received from"), False),
                                 ("received_to", N_("Received until"), True)):
            try:
                moments[name] = local_moment(v[name], seen, label, end=end)
            except InputError as exc:
                self.errors[name] = gettext(exc.detail) % {"field": gettext(label)}
        self.filters = None if self.errors else Filters(
            state=v["state"] or None, type=v["type"] or None, partner=v["partner"] or None,
            sender=v["sender"] or None, correlation_id=v["case"] or None, message_id=v["id"] or None,
            received_from=moments["received_from"], received_to=moments["received_to"])

    def query(self) -> dict:
        return {name: value for name, value in self.values.items() if value}

    def refused(self) -> InputError:
        return InputError(" ".join(self.errors.values()))


def local_moment(text: str, seen: Viewer, field: str, *, end: bool) -> dt.datetime | None:
    """A date ("2026-12-03") or a date and time ("2026-12-03T14:05", as a datetime-local input sends it) in the
    viewer's zone, as UTC. `end`: the end of what was named (the next day, minute or second), since "until"
    includes it. InputError (400) for anything else, its detail a msgid naming the field as %(field)s."""
    if not text:
        return None
    matched = _DATE.fullmatch(text)
    if matched is None:
        raise InputError(N_("%(field)s: a date is written YYYY-MM-DD, or YYYY-MM-DDTHH:MM."))
    year, month, day, hour, minute, second = (int(g) if g is not None else None for g in matched.groups())
    try:
        moment = dt.datetime(year, month, day, hour or 0, minute or 0, second or 0, tzinfo=seen.tz)
        if end:
            moment += (dt.timedelta(days=1) if hour is None else dt.timedelta(minutes=1) if second is None
                       else dt.timedelta(seconds=1))
        return moment.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):  # 31 February; or the calendar's edge (year 1, 9999) moved by a zone
        raise InputError(N_("%(field)s: there is no such date or time.")) from None


def search_form(seen: Viewer = Depends(reader),
                state: str | None = Query(None, max_length=20), type: str | None = Query(None, max_length=80),
                partner: str | None = Query(None, max_length=20), sender: str | None = Query(None, max_length=20),
                case: str | None = Query(None, max_length=80), received_from: str | None = Query(None, max_length=30),
                received_to: str | None = Query(None, max_length=30),
                id: str | None = Query(None, max_length=80)) -> SearchForm:
    return SearchForm(seen, state=state, type=type, partner=partner, sender=sender, case=case,
                      received_from=received_from, received_to=received_to, id=id)


def choices(hub) -> dict:
    """What the form offers to pick from (the configuration's parties and message types)."""
    return {"parties": sorted(hub.config.parties), "types": sorted({route.type for route in hub.config.routes}),
            "states": MessageState.ALL}


@router.get("/messages")
def messages_page(request: Request, seen: Viewer = Depends(reader),
                  form: SearchForm = Depends(search_form),
                  before: int | None = Query(None, ge=1, le=MAX_ID), after: int | None = Query(None, ge=0, le=MAX_ID),
                  limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)):
    hub = request.app.state.hub
    if form.errors:  # the form again, saying what to fix (nothing searched)
        found = Found(0, True, [], None)
    else:
        with hub.sessions() as session:
            found = search_messages(session, form.filters, limit=limit, before=before, after=after)
    query = {**form.query(), **({"limit": limit} if limit != PAGE_SIZE else {})}
    return render(request, seen, "messages.html", status_code=400 if form.errors else 200, errors=form.errors,
                  found=found, form=form.values, query=query, paged=before is not None or after is not None,
                  newer_url=url("/monitor/messages", **query, after=found.previous_after)
                  if found.previous_after else None,
                  count_limit=COUNT_LIMIT, choices=choices(hub), state_labels=STATE_LABELS,
                  state_classes=STATE_CLASSES, message_url=message_url,
                  next_url=url("/monitor/messages", **query, before=found.next_before) if found.next_before else None,
                  csv_url=url("/monitor/messages.csv", **query))


@router.get("/messages.csv")
def messages_csv(request: Request, seen: Viewer = Depends(reader),
                 form: SearchForm = Depends(search_form)):
    """The search's result as CSV, newest first, streamed a thousand rows at a time (each its own query and
    session: no connection held for the download's length), at most CSV_CAP rows."""
    hub = request.app.state.hub
    if form.errors:
        raise form.refused()
    gettext = translations(seen.lang).gettext
    filename = f"messages-{dt.datetime.now(seen.tz):%Y%m%d-%H%M}.csv"

    def rows():
        yield "\ufeff" + csv_line([gettext(column) for column in CSV_COLUMNS])
        with hub.sessions() as session:  # a date range's ids found once for every page
            ids = received_id_range(session, form.filters.received_from, form.filters.received_to)
        before, written = None, 0
        while written < CSV_CAP:
            with hub.sessions() as session:
                found = search_messages(session, form.filters, limit=min(CSV_PAGE, CSV_CAP - written),
                                        before=before, count=False, ids=ids)
            for m in found.items:
                yield csv_line([m.received_at.astimezone(seen.tz).isoformat(timespec="seconds"), m.message_id,
                                m.sender, m.recipient, m.type, m.correlation_id, m.in_reply_to or "", m.state,
                                m.digest, m.updated_at.astimezone(seen.tz).isoformat(timespec="seconds")])
            written += len(found.items)
            before = found.next_before
            if before is None:
                return
        with hub.sessions() as session:
            more = search_messages(session, form.filters, limit=1, before=before, count=False, ids=ids).items
        if more:
            yield csv_line([gettext("Cut at %(n)s rows: narrow the search to export the rest") % {"n": CSV_CAP}])

    return StreamingResponse((line.encode("utf-8") for line in rows()), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage return, which some
    read past) would be taken for a formula, so it gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_line(values) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([csv_cell(v) for v in values])
    return buffer.getvalue()


def message_url(sender: str, message_id: str, *parts: str) -> str:
    return "/".join(["/monitor/messages", sender, message_id, *parts])


# -- a message ------------------------------------------------------------------------------------------

def load_message(session, sender: str, message_id: str) -> dict:
    """Everything the message's page shows, without its payload bytes (only whether each is there)."""
    message = session.scalars(select(Message).where(Message.sender == sender, Message.message_id == message_id)
                              .options(defer(Message.received_bytes), defer(Message.canonical_bytes))).first()
    if message is None:
        raise NotFound(f"no message {message_id[:80]} from {sender[:20]}")
    has_received, has_canonical = session.execute(
        select(Message.received_bytes.is_not(None), Message.canonical_bytes.is_not(None))
        .where(Message.id == message.id)).one()
    deliveries = session.execute(
        select(Delivery.id, Delivery.partner, Delivery.state, Delivery.attempts, Delivery.next_attempt_at,
               Delivery.last_error, Delivery.partner_reference, Delivery.delivered_at, Delivery.mapping,
               Delivery.operation, func.length(Delivery.sent_bytes).label("sent_size"), Delivery.sent_path,
               func.length(Delivery.partner_receipt).label("answer_size"))
        .where(Delivery.message_pk == message.id).order_by(Delivery.id)).all()
    events = session.scalars(select(Event).where(Event.message_pk == message.id).order_by(Event.id)).all()
    partner_of = {d.id: d.partner for d in deliveries}
    attempts: dict[int, list[dict]] = {d.id: [] for d in deliveries}
    rounds: dict[int, int] = {d.id: 1 for d in deliveries}
    for event in events:
        if event.delivery_id not in attempts:
            continue
        if event.kind == timeline.RESENT:
            rounds[event.delivery_id] += 1
        elif event.kind in ATTEMPT_OUTCOMES:
            attempts[event.delivery_id].append({"n": len(attempts[event.delivery_id]) + 1,
                                                "round": rounds[event.delivery_id], "at": event.at,
                                                "kind": event.kind, "detail": event.detail,
                                                "failed": event.kind in (timeline.RETRY_SCHEDULED,
                                                                         timeline.DEAD_LETTERED)})
    answers = {e.delivery_id: e.digest for e in events if e.kind == timeline.PARTNER_RECEIPT}
    # messages answering this one (a partner's answer taken in, a later message of the case): found within the
    # case (indexed), not by in_reply_to over the whole table
    replies = session.execute(select(Message.sender, Message.message_id, Message.type, Message.state)
                              .where(Message.correlation_id == message.correlation_id,
                                     Message.in_reply_to == message.message_id).order_by(Message.id)).all()
    return {"replies": replies, "message": message, "receipt": message.receipt, "has_received": has_received,
            "has_canonical": has_canonical, "deliveries": deliveries, "events": events, "partner_of": partner_of,
            "attempts": attempts, "answers": answers}


@router.get("/messages/{sender}/{message_id}")
def message_page(sender: str, message_id: str, request: Request, seen: Viewer = Depends(reader),
                 resent: int | None = Query(None, ge=0, le=1000)):
    check_names(seen, sender, message_id)
    with request.app.state.hub.sessions() as session:
        shown = load_message(session, sender, message_id)
    return render(request, seen, "message.html", **shown, receipt_text=pretty_xml(shown["receipt"]),
                  resent=resent, state_labels=STATE_LABELS, state_classes=STATE_CLASSES, event_labels=EVENT_LABELS,
                  vouches=VOUCHES, message_url=message_url, tabs=payload_tabs(shown), part=None, tab_partner=None)


@router.get("/messages/{sender}/{message_id}/live")
def message_live(sender: str, message_id: str, request: Request, seen: Viewer = Depends(reader)):
    """The message's deliveries and timeline as they are now (its page refreshes them while it is in flight)."""
    check_names(seen, sender, message_id)
    with request.app.state.hub.sessions() as session:
        shown = load_message(session, sender, message_id)
    return render(request, seen, "_message_live.html", **shown, state_labels=STATE_LABELS,
                  state_classes=STATE_CLASSES, event_labels=EVENT_LABELS, vouches=VOUCHES)


def payload_tabs(shown: dict) -> list[dict]:
    """The payload tabs a message has: received, canonical (a mapped-in document), sent and answered per delivery."""
    m = shown["message"]
    tabs = []
    if shown["has_received"] or m.purged_at:
        tabs.append({"part": "received", "partner": None, "label": N_("Received")})
    if shown["has_canonical"]:
        tabs.append({"part": "canonical", "partner": None, "label": N_("Canonical")})
    for d in shown["deliveries"]:
        if d.sent_size:
            tabs.append({"part": "sent", "partner": d.partner, "label": N_("Sent to %(partner)s")})
        if d.answer_size:
            tabs.append({"part": "answer", "partner": d.partner, "label": N_("Answer of %(partner)s")})
    return tabs


def check_names(seen: Viewer, sender: str, message_id: str) -> None:
    if len(sender) > 20 or len(message_id) > 80:
        raise InputError(translations(seen.lang).gettext(
            "A sender has at most 20 characters and a message id at most 80."))


@router.get("/messages/{sender}/{message_id}/payload/{part}")
def payload_page(sender: str, message_id: str, part: str, request: Request,
                 partner: str | None = Query(None, max_length=20),
                 seen: Viewer = Depends(viewer("messages:payload"))):
    """One payload, pretty-printed: viewing it is what the audit log records (PAYLOAD_VIEWED by the viewer)."""
    check_names(seen, sender, message_id)
    if part not in ("received", "canonical", "sent", "answer"):
        raise NotFound(f"a message has no part {part[:20]!r} (received, canonical, sent or answer)")
    hub = request.app.state.hub
    viewed = view_payload(hub, seen.identity.actor, message_id, sender=sender, part=part, partner=partner)
    with hub.sessions() as session:
        shown = load_message(session, sender, message_id)
    data = viewed.data
    return render(request, seen, "message_payload.html", **shown, part=part, tab_partner=partner and partner.upper(),
                  tabs=payload_tabs(shown), message_url=message_url, state_labels=STATE_LABELS,
                  state_classes=STATE_CLASSES, purged_at=viewed.purged_at, size=len(data) if data else 0,
                  sha256=hashlib.sha256(data).hexdigest() if data else None,
                  text=pretty_xml(data[:SHOWN_BYTES]) if data else None, cut=bool(data) and len(data) > SHOWN_BYTES)


def pretty_xml(data: bytes | None) -> str | None:
    """The XML indented for reading (the stored bytes are not changed: this is only how they are shown); text
    that does not parse as XML is shown as it is. Never resolves entities or fetches anything."""
    if data is None:
        return None
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                 remove_blank_text=True)
        return etree.tostring(etree.fromstring(data, parser), pretty_print=True, encoding="unicode")
    except (etree.XMLSyntaxError, ValueError):
        return data.decode("utf-8", errors="replace")


@router.get("/messages/{sender}/{message_id}/evidence")
def evidence_bundle(sender: str, message_id: str, request: Request,
                    seen: Viewer = Depends(viewer("messages:payload"))):
    """The evidence bundle of the message's case, as `hub evidence export CASE` makes it (audited
    EVIDENCE_EXPORTED with the viewer as actor), downloaded and then removed from the server. It holds the
    case's payloads, so it needs what a payload tab needs."""
    from hub.evidence.export import export_case
    check_names(seen, sender, message_id)
    hub = request.app.state.hub
    with hub.sessions() as session:
        case = session.scalar(select(Message.correlation_id).where(Message.sender == sender,
                                                                   Message.message_id == message_id))
    if case is None:
        raise NotFound(f"no message {message_id} from {sender}")
    folder = Path(tempfile.mkdtemp(prefix="evidence-", dir=hub.settings.var_dir if hub.settings.var_dir.is_dir()
                                   else None))
    try:
        result = export_case(hub, case, folder, actor=seen.identity.actor)
    except NotFound:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except HubError as exc:  # the chain does not verify, or nothing of the case is sealed yet
        shutil.rmtree(folder, ignore_errors=True)
        why = translations(seen.lang).gettext("The evidence of this case cannot be exported now: %(why)s")
        return render(request, seen, "error.html", status_code=409, status=409, title="",
                      detail=why % {"why": str(exc)})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(result.path, media_type="application/zip", filename=result.path.name,
                        headers={"Cache-Control": "no-store"},
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.post("/messages/{sender}/{message_id}/resend")
def resend_message(sender: str, message_id: str, request: Request,
                   seen: Viewer = Depends(csrf_checked("messages:resend"))):
    """Its dead deliveries back in the outbox (hub/delivery/operations.resend: audited RESEND by the viewer)."""
    from hub.delivery.operations import resend
    check_names(seen, sender, message_id)
    count = resend(request.app.state.hub, message_id, actor=seen.identity.actor, sender=sender)
    return RedirectResponse(url(message_url(sender, message_id), resent=count), status_code=303)

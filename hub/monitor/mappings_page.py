"""The mapping pages (/monitor/mappings): integration staff see each XSLT mapping with its routes and active
version, compare versions, edit a stylesheet with a live preview on a stored message, replay a version over the
stored history and activate or roll back with a confirmation.

Everything about mappings comes through hub/monitor/mappings_source.py (versions, activations, preview, replay);
this module only checks what a form sends and renders. Reading and running checks needs `mappings:read`
(checks change nothing); saving, activating and rolling back need `mappings:manage` and a form of the session
(CSRF), as the dead-letter page's resend does.

A mapping is addressed by its name under mappings/, `<partner folder>/<file>.xsl`, which is the path after
/monitor/mappings/."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from hub.errors import InputError, NotFound, UnfitCharacter
from hub.monitor import mappings_source as source
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from hub.xml.text import unfit_character

router = APIRouter(prefix="/monitor", include_in_schema=False)

FOLDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}\.xsl$")
XSLT_LIMIT = 50_000           # characters of a stylesheet sent from the editor (the largest today: 4,000), sent
                              # as multipart so that it fits the hub's cap on a form's body (HUB_MAX_JSON_BYTES)
REPLAY_CHOICES = (50, 200, 1_000, 5_000)
SAMPLES_OFFERED = 50          # stored messages offered to preview on
FRAGMENT_HEADER = "x-console-fragment"


@dataclass(frozen=True)
class Line:
    """One line of a diff as the page shows it: `kind` is "add", "remove", "hunk" or "same"."""
    kind: str
    text: str


def _kind(text: str) -> str:
    return ("hunk" if text.startswith("@@") else "add" if text.startswith("+") else
            "remove" if text.startswith("-") else "same")


def marked(lines: list[str]) -> list[Line]:
    """A unified diff's lines, each marked with what it is (for the page's colours; the +/- stay for readers
    who do not see them)."""
    return [Line(_kind(text), text) for text in lines]


def diff_lines(before: str, after: str, *, before_name: str, after_name: str) -> list[Line]:
    """A unified diff of two texts (two versions of a stylesheet), marked line by line."""
    return marked(list(difflib.unified_diff(before.splitlines(), after.splitlines(), before_name, after_name,
                                            lineterm="", n=3)))


# -- what a form or the address sends ---------------------------------------------------------------------------

def mapping_name(folder: str, file: str) -> str:
    if not FOLDER.match(folder) or not FILE.match(file):
        raise NotFound("no such mapping: a mapping is a partner folder and an .xsl file, as the list links them")
    return f"{folder}/{file}"


def checked_text(name: str, value: str | None, *, limit: int) -> str:
    value = (value or "").strip()
    character = unfit_character(value, parameter=True)
    if character:
        raise UnfitCharacter(f"field {name}", character)
    if len(value) > limit:
        raise InputError(f"{name}: at most {limit} characters")
    return value


def checked_xslt(value: str) -> bytes:
    if "\x00" in value:
        raise InputError("xslt: a stylesheet carries no NUL character")
    if not value.strip():
        raise InputError("xslt: the stylesheet is empty")
    if len(value) > XSLT_LIMIT:
        raise InputError(f"xslt: at most {XSLT_LIMIT} characters")
    return value.encode()


def _text(xslt: bytes) -> str:
    return xslt.decode("utf-8", errors="replace")


# -- pages ------------------------------------------------------------------------------------------------------

@router.get("/mappings")
def mappings_list(request: Request, seen: Viewer = Depends(viewer("mappings:read"))):
    hub = request.app.state.hub
    return render(request, seen, "mappings.html", mappings=source.catalogue(hub))


@router.get("/mappings/{folder}/{file}")
def mapping_page(request: Request, folder: str, file: str,
                 a: int | None = Query(None, ge=1, le=1_000_000), b: int | None = Query(None, ge=1, le=1_000_000),
                 seen: Viewer = Depends(viewer("mappings:read"))):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    versions = source.versions(hub, mapping.name)
    diff = None
    if a is not None and b is not None:
        older, newer = source.version(hub, mapping.name, a), source.version(hub, mapping.name, b)
        diff = diff_lines(_text(older.xslt), _text(newer.xslt), before_name=f"v{a}", after_name=f"v{b}")
    return render(request, seen, "mapping.html", mapping=mapping, versions=versions,
                  activations=source.activations(hub, mapping.name), diff=diff, a=a, b=b)


def _editor(request: Request, seen: Viewer, mapping, *, xslt: str, message_id: str | None, result=None,
            notice: str | None = None, status_code: int = 200, comment: str = ""):
    hub = request.app.state.hub
    return render(request, seen, "mapping_editor.html", status_code=status_code, mapping=mapping, xslt=xslt,
                  samples=source.recent_messages(hub, mapping.name, SAMPLES_OFFERED), message_id=message_id,
                  result=result, notice=notice, comment=comment)


@router.get("/mappings/{folder}/{file}/edit")
def editor_page(request: Request, folder: str, file: str, version: int | None = Query(None, ge=1, le=1_000_000),
                message: str | None = Query(None, max_length=80),
                seen: Viewer = Depends(viewer("mappings:read"))):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    start = source.version(hub, mapping.name, version) if version else mapping.active
    return _editor(request, seen, mapping, xslt=_text(start.xslt),
                   message_id=checked_text("message", message, limit=80) or None)


@dataclass
class PreviewShown:
    """A preview as the page shows it: the check's result and the stylesheet's own changes."""
    preview: source.Preview
    output_diff: list[Line]
    stylesheet_diff: list[Line]


@router.post("/mappings/{folder}/{file}/preview")
async def preview_action(request: Request, folder: str, file: str,
                         seen: Viewer = Depends(csrf_checked("mappings:read")),
                         xslt: str = Form(..., max_length=XSLT_LIMIT), message_id: str = Form("", max_length=80)):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    text = checked_xslt(xslt)
    chosen = checked_text("message_id", message_id, limit=80)
    if not chosen:
        raise InputError("message_id: choose a stored message to preview on")
    preview = await run_in_threadpool(source.preview, hub, mapping.name, text, message_id=chosen,
                                     actor=seen.identity.actor)
    shown = PreviewShown(preview, marked(preview.diff),
                         diff_lines(_text(mapping.active.xslt), xslt, before_name=f"v{mapping.active.number}",
                                    after_name="edited"))
    if request.headers.get(FRAGMENT_HEADER):
        return render(request, seen, "_mapping_preview.html", mapping=mapping, result=shown)
    return _editor(request, seen, mapping, xslt=xslt, message_id=chosen, result=shown)


@router.post("/mappings/{folder}/{file}/save")
async def save_action(request: Request, folder: str, file: str,
                      seen: Viewer = Depends(csrf_checked("mappings:manage")),
                      xslt: str = Form(..., max_length=XSLT_LIMIT), comment: str = Form(..., max_length=500),
                      message_id: str = Form("", max_length=80)):
    message_id = checked_text("message_id", message_id, limit=80)
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    text, why = checked_xslt(xslt), checked_text("comment", comment, limit=500)
    if not why:
        raise InputError("comment: say what this version changes")
    try:
        added = await run_in_threadpool(source.add_version, hub, mapping.name, text, author=seen.identity.actor,
                                        comment=why)
    except InputError as exc:  # refused stylesheet, failed checks, versions not stored: said on the page, nothing saved
        return _editor(request, seen, mapping, xslt=xslt, message_id=message_id or None, notice=str(exc),
                       status_code=exc.status, comment=why)
    return RedirectResponse(url(f"/monitor/mappings/{mapping.name}", a=mapping.active.number, b=added.number),
                            status_code=303)


@router.get("/mappings/{folder}/{file}/replay")
def replay_page(request: Request, folder: str, file: str, seen: Viewer = Depends(viewer("mappings:read"))):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    return render(request, seen, "mapping_replay.html", mapping=mapping, versions=source.versions(hub, mapping.name),
                  report=None, choices=REPLAY_CHOICES, last=REPLAY_CHOICES[1], chosen=mapping.active.number,
                  first_diffs=[])


@router.post("/mappings/{folder}/{file}/replay")
async def replay_action(request: Request, folder: str, file: str,
                        seen: Viewer = Depends(csrf_checked("mappings:read")),
                        version: int | None = Form(None, ge=1, le=1_000_000),
                        xslt: str | None = Form(None, max_length=XSLT_LIMIT),
                        last: int = Form(..., ge=1, le=source.REPLAY_LIMIT)):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    if xslt:
        text, chosen = checked_xslt(xslt), None
    else:
        chosen = version or mapping.active.number
        text = source.version(hub, mapping.name, chosen).xslt
    report = await run_in_threadpool(source.replay, hub, mapping.name, text, last=last, actor=seen.identity.actor)
    return render(request, seen, "mapping_replay.html", mapping=mapping, versions=source.versions(hub, mapping.name),
                  report=report, choices=REPLAY_CHOICES, last=last, chosen=chosen,
                  first_diffs=[(d["message_id"], marked(d["diff"])) for d in report.first_diffs])


@router.get("/mappings/{folder}/{file}/activate")
def activation_page(request: Request, folder: str, file: str, version: int = Query(..., ge=1, le=1_000_000),
                    seen: Viewer = Depends(viewer("mappings:manage"))):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    chosen = source.version(hub, mapping.name, version)
    return render(request, seen, "mapping_activate.html", mapping=mapping, chosen=chosen, notice=None, last_replay=source.last_replay(hub, mapping.name, chosen.number))


@router.post("/mappings/{folder}/{file}/activate")
async def activate_action(request: Request, folder: str, file: str,
                          seen: Viewer = Depends(csrf_checked("mappings:manage")),
                          version: int = Form(..., ge=1, le=1_000_000), reason: str = Form(..., max_length=500)):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    why = checked_text("reason", reason, limit=500)
    if not why:
        raise InputError("reason: say why this version goes live")
    chosen = source.version(hub, mapping.name, version)
    try:
        await run_in_threadpool(source.activate, hub, mapping.name, version, actor=seen.identity.actor, reason=why)
    except InputError as exc:  # a failed check, already active, another activation first (409): nothing changed
        return render(request, seen, "mapping_activate.html", status_code=exc.status, mapping=mapping,
                      chosen=chosen, notice=str(exc),
                      last_replay=source.last_replay(hub, mapping.name, chosen.number))
    return RedirectResponse(f"/monitor/mappings/{mapping.name}", status_code=303)


@router.post("/mappings/{folder}/{file}/rollback")
async def rollback_action(request: Request, folder: str, file: str,
                          seen: Viewer = Depends(csrf_checked("mappings:manage")),
                          reason: str = Form(..., max_length=500),
                          active: int | None = Form(None, ge=1, le=1_000_000)):
    hub = request.app.state.hub
    mapping = source.find(hub, mapping_name(folder, file))
    why = checked_text("reason", reason, limit=500)
    if not why:
        raise InputError("reason: say why the previous version comes back")
    try:
        await run_in_threadpool(source.rollback, hub, mapping.name, actor=seen.identity.actor, reason=why,
                                expected_active=active)
    except InputError as exc:
        return render(request, seen, "mapping_activate.html", status_code=exc.status, mapping=mapping,
                      chosen=None, notice=str(exc), last_replay=None)
    return RedirectResponse(f"/monitor/mappings/{mapping.name}", status_code=303)

"""What every console page is made with: the signed-in viewer, the CSRF check of actions, and rendering.

    viewer(permission=None)   a dependency giving the Viewer of a live session; without one a GET is sent
                              to the sign-in page (SignInRequired), and a viewer whose role lacks
                              `permission` gets a 403 page (Forbidden): nothing is done
    csrf_checked(permission)  the same for actions (POST): the form's `csrf_token` field (or an X-CSRF-Token
                              header) must be the session's, and an Origin header, when sent, this host
    render(request, viewer, template, **context)   the page in the viewer's language, zone and direction

Templates extend base.html (blocks `title`, `content`) and have `_`/`ngettext` (gettext, newstyle),
`viewer`, `when(dt)`, `ago(dt)`, `number(n)`, `ltr(text)` (ids, digests and numbers kept left to right
inside right-to-left text) and `url(path, **query)`. Pages carry no inline script or style: the Content
Security Policy allows only the console's own files (hub/monitor/static)."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from hub.access.sessions import resume
from hub.access.tokens import Identity
from hub.apps import NavItem
from hub.errors import Forbidden, SignInRequired
from hub.monitor.i18n import LANGUAGE_NAMES, LANGUAGES, Formats, direction, negotiate, translations, zone

TEMPLATES = Path(__file__).parent / "templates"
SESSION_COOKIE = "hub_session"
LANG_COOKIE = "hub_lang"
ZONE_COOKIE = "hub_tz"
PREFIX = "/monitor"

# The console's navigation, in order; an app adds its entries through its ConsolePart (hub/apps.py).
NAV: list[NavItem] = [NavItem("/monitor/", "Overview", "console:overview"),
                      NavItem("/monitor/messages", "Messages", "messages:read"),
                      NavItem("/monitor/dead-letters", "Dead letters", "messages:read"),
                      NavItem("/monitor/partners", "Partners", "messages:read"),
                      NavItem("/monitor/refusals", "Refusals", "refusals:read"),
                      NavItem("/monitor/audit", "Audit log", "audit:read"),
                      NavItem("/monitor/alerts", "Alerts", "alerts:read"),
                      NavItem("/monitor/mappings", "Mappings", "mappings:read")]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Viewer:
    """The person looking at a page: who (their Identity: role, post), their language and zone, and their
    session's CSRF token."""

    identity: Identity
    lang: str
    tz: ZoneInfo
    csrf: str
    session_id: str

    def may(self, permission: str) -> bool:
        return self.identity.may(permission)

    @property
    def formats(self) -> Formats:
        return Formats(self.lang, self.tz)


def language_of(request: Request) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def viewer(permission: str | None = None):
    """A dependency: the Viewer of the request's live console session (see the module's doc)."""
    def dependency(request: Request) -> Viewer:
        signed = resume(request.app.state.hub, request.cookies.get(SESSION_COOKIE))
        if signed is None:
            raise SignInRequired("sign in to see this page")
        seen = Viewer(signed.identity, language_of(request), zone(request.cookies.get(ZONE_COOKIE)), signed.csrf,
                      signed.session_id)
        request.state.viewer = seen
        if permission:
            signed.identity.require(permission, doing=f"{request.method} {request.url.path}")
        return seen
    dependency.__name__ = f"viewer_{(permission or 'any').replace(':', '_').replace('-', '_')}"
    return dependency


def csrf_checked(permission: str | None = None):
    """A dependency for actions: the Viewer, once the request proves it comes from one of the session's pages."""
    async def dependency(request: Request, seen: Viewer = Depends(viewer(permission))) -> Viewer:
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Forbidden(f"an action of the console must come from its own pages, not from {origin[:100]}")
        given = request.headers.get("x-csrf-token")
        if given is None:
            given = (await request.form()).get("csrf_token")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), seen.csrf.encode()):
            raise Forbidden("this action's form does not carry this session's CSRF token: reload the page and "
                            "try again")
        return seen
    dependency.__name__ = f"csrf_{(permission or 'any').replace(':', '_').replace('-', '_')}"
    return dependency


def template_folders(request: Request) -> tuple[Path, ...]:
    return tuple(part.templates for part in getattr(request.app.state, "console_parts", ()) if part.templates)


@lru_cache(maxsize=None)
def environment(lang: str, folders: tuple[Path, ...] = ()) -> Environment:
    env = Environment(loader=ChoiceLoader([FileSystemLoader(TEMPLATES), *(FileSystemLoader(f) for f in folders)]),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, extensions=["jinja2.ext.i18n"], trim_blocks=True,
                      lstrip_blocks=True)
    env.install_gettext_translations(translations(lang), newstyle=True)
    env.globals.update(LANGUAGES=LANGUAGES, LANGUAGE_NAMES=LANGUAGE_NAMES, lang=lang, dir=direction(lang),
                       ltr=ltr, url=url)
    return env


def ltr(text) -> Markup:
    """Ids, digests, codes and numbers keep their left-to-right order inside right-to-left text."""
    return Markup('<bdi dir="ltr">') + escape("" if text is None else text) + Markup("</bdi>")


def url(path: str, **query) -> str:
    """`path` with the query parameters that have a value."""
    pairs = [(key, value) for key, value in query.items() if value not in (None, "")]
    return path + ("?" + urlencode(pairs) if pairs else "")


def nav_for(request: Request, seen: Viewer | None) -> list[NavItem]:
    if seen is None:
        return []
    items = NAV + [item for part in getattr(request.app.state, "console_parts", ()) for item in part.nav]
    return [item for item in items if seen.may(item.permission)]


def render(request: Request, seen: Viewer | None, template: str, *, status_code: int = 200,
           **context) -> HTMLResponse:
    """`template` rendered for `seen` (None: a person not signed in, on the sign-in and error pages). A live
    fragment (`data-refresh`) is rendered the same way, from the partial its page includes."""
    lang = seen.lang if seen else language_of(request)
    formats = seen.formats if seen else Formats(lang, zone(request.cookies.get(ZONE_COOKIE)))
    body = environment(lang, template_folders(request)).get_template(template).render(
        viewer=seen, nav=nav_for(request, seen), current=request.url.path, when=formats.when, ago=formats.ago,
        number=formats.number, **context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


async def console_error(request: Request, status: int, title: str, detail: str):
    """An error under /monitor as a page (a person is reading): 401 on a GET goes to the sign-in page."""
    if status == 401 and request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(url("/monitor/login", next=target), status_code=303)
    seen = getattr(request.state, "viewer", None)
    if seen is None and status != 401:
        seen = await run_in_threadpool(_quiet_viewer, request)
    return render(request, seen, "error.html", status_code=status, status=status, title=title, detail=detail)


def _quiet_viewer(request: Request) -> Viewer | None:
    """The viewer for an error page's navigation, or None (an error page never fails for want of one)."""
    try:
        return viewer()(request)
    except Exception:  # noqa: BLE001 - no session, or none readable: the page shows without navigation
        return None


def under_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


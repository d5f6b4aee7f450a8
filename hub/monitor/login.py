"""Signing in and out, and choosing the language.

The sign-in form carries a token of its own (double-submit: a cookie and a field that must match), so that
another site cannot sign a browser in to an account of its choosing. Every sign-in, failed sign-in, lockout
and sign-out is in the audit log; a failed sign-in names the username tried (cut to 40 characters), the
client's address and why, never the password. The person sees one message for every failure."""
from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from hub.access.accounts import LOCK_AFTER, LOCK_MINUTES, check_password, identity_of
from hub.access.sessions import end_session, open_session
from hub.evidence import audit
from hub.monitor.i18n import LANGUAGES
from hub.monitor.web import LANG_COOKIE, SESSION_COOKIE, Viewer, csrf_checked, render
from hub.xml.text import shown, unfit_character

router = APIRouter(prefix="/monitor", include_in_schema=False)
LOGIN_CSRF_COOKIE = "hub_login_csrf"
LANDING = "/monitor/"


PUBLIC_PAGES = ("/verify",)  # pages for anyone (a printed document's verification), where a language choice returns


def safe_next(target: str | None) -> str:
    """Where to go after signing in or choosing a language: a console path or a public page only (never another
    site: no '//', no scheme)."""
    if (not target or not target.startswith(("/monitor", *PUBLIC_PAGES)) or target.startswith("//") or "\\" in target
            or any(unfit_character(c, parameter=True) for c in target) or len(target) > 500):
        return LANDING
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(request: Request, *, next_path: str, status_code: int = 200, failed: bool = False,
                username: str = ""):
    token = secrets.token_urlsafe(24)
    response = render(request, None, "login.html", status_code=status_code, login_csrf=token, next_path=next_path,
                      failed=failed, username=username, lock_after=LOCK_AFTER, lock_minutes=LOCK_MINUTES)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        path="/monitor")
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None):
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
def login(request: Request, username: str = Form("", max_length=200), password: str = Form("", max_length=1000),
          csrf_token: str = Form("", max_length=200), next: str = Form(LANDING, max_length=1000)):
    hub = request.app.state.hub
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = safe_next(next)
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return _login_page(request, next_path=target, status_code=403, failed=True)
    client = request.client.host if request.client else "unknown"
    tried = shown(username.strip(), 40)
    with hub.sessions.begin() as session:
        outcome = check_password(session, username, password)
        if outcome.user is None:
            audit.record(session, actor=f"console {client}", action="LOGIN_FAILED", subject=tried,
                         detail=outcome.reason)
            if outcome.locked_now:
                audit.record(session, actor=f"console {client}", action="ACCOUNT_LOCKED", subject=tried,
                             detail=f"{LOCK_AFTER} failed sign-ins in a row: locked for {LOCK_MINUTES} minutes")
            cookie = None
        else:
            cookie, _csrf = open_session(session, outcome.user)
            audit.record(session, actor=identity_of(outcome.user).actor, action="LOGIN", subject=outcome.user.username,
                         detail=f"from {client}")
    if cookie is None:
        return _login_page(request, next_path=target, status_code=401, failed=True, username=tried)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="strict", secure=_secure(request),
                        path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/monitor")
    return response


@router.post("/logout")
def logout(request: Request, seen: Viewer = Depends(csrf_checked())):
    hub = request.app.state.hub
    with hub.sessions.begin() as session:
        end_session(session, seen.session_id)
        audit.record(session, actor=seen.identity.actor, action="LOGOUT", subject=seen.identity.user or "")
    response = RedirectResponse("/monitor/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/language/{lang}")
def choose_language(lang: str, request: Request, next: str | None = None):
    """A preference only (no session needed, nothing else changes): remembered for a year."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", secure=_secure(request),
                            path="/")
    return response


@router.get("")
def console_root():
    return RedirectResponse(LANDING, status_code=308)

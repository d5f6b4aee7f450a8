"""The consular posts in the console: /monitor/posts lists them, open first, with the languages each serves in,
its time zone and, for a closed one, when and why (posts:read). An administrator (posts:manage) creates a post
and closes one there, through the same functions as POST /api/v1/posts and .../close (registry/post_views.py):
the same checks, the same audit entries; a refusal is said on the page and changes nothing."""
from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select

from hub.errors import NotFound, RecordConflict
from hub.monitor.web import Viewer, csrf_checked, render, url, viewer
from registry.models import Post
from registry.outputs import post_out
from registry.inputs import POST_CODE
from registry.post_views import CloseIn, PostIn, close, create

router = APIRouter(include_in_schema=False)
FIELDS = ("code", "name", "kind", "country", "city", "jurisdiction", "languages", "time_zone")


def _posts(hub) -> list[dict]:
    with hub.sessions() as session:
        return [post_out(p) for p in session.scalars(select(Post).order_by(Post.active.desc(), Post.country,
                                                                           Post.city))]


def _page(request: Request, seen: Viewer, *, status_code: int = 200, **context):
    return render(request, seen, "posts/list.html", status_code=status_code, posts=_posts(request.app.state.hub),
                  may_manage=seen.may("posts:manage"), **{"form": {}, "error": None, "done": None, **context})


def _invalid(exc: ValidationError) -> str:
    """The fields a form got wrong, by name (never the values)."""
    return ", ".join(sorted({str(error["loc"][0]) for error in exc.errors() if error.get("loc")}))


@router.get("/monitor/posts")
def posts_page(request: Request, created: str | None = None, closed: str | None = None,
               seen: Viewer = Depends(viewer("posts:read"))):
    done = ("created", created) if created else ("closed", closed) if closed else None
    if done and not any(post["code"] == done[1] for post in _posts(request.app.state.hub)):
        done = None  # a notice only about a post there is: a link cannot make the page say anything else
    return _page(request, seen, done=done)


@router.post("/monitor/posts")
async def create_from_form(request: Request, seen: Viewer = Depends(csrf_checked("posts:manage"))):
    form = await request.form()
    given = {name: str(form.get(name) or "").strip() for name in FIELDS}
    try:
        body = PostIn(**{**given, "code": given["code"].upper(), "country": given["country"].upper(),
                         "languages": [code for code in re.split(r"[\s,;]+", given["languages"].lower()) if code]})
    except ValidationError as exc:
        return _page(request, seen, status_code=422, form=given, error=("invalid", _invalid(exc)))
    try:
        created = await run_in_threadpool(create, request.app.state.hub, seen.identity, body)
    except RecordConflict as exc:
        return _page(request, seen, status_code=409, form=given, error=("conflict", exc.detail))
    return RedirectResponse(url("/monitor/posts", created=created["code"]), status_code=303)


@router.post("/monitor/posts/close")
async def close_from_form(request: Request, seen: Viewer = Depends(csrf_checked("posts:manage"))):
    form = await request.form()
    code = str(form.get("code") or "")
    if not re.fullmatch(POST_CODE, code):  # checked before it reaches the database (a NUL on PostgreSQL)
        return _page(request, seen, status_code=404, error=("conflict", "no consular post with such a code"))
    try:
        body = CloseIn(reason=str(form.get("reason") or ""))
    except ValidationError:
        return _page(request, seen, status_code=422, error=("reason", code))
    try:
        await run_in_threadpool(close, request.app.state.hub, seen.identity, code, body)
    except RecordConflict as exc:
        return _page(request, seen, status_code=409, error=("conflict", exc.detail))
    except NotFound:
        return _page(request, seen, status_code=404, error=("conflict", f"no consular post with code {code!r}"))
    return RedirectResponse(url("/monitor/posts", closed=code), status_code=303)

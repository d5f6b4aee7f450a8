"""Errors as RFC 9457 problem details (application/problem+json).

An input refused at an intake door before the hub even read it (415 media type, 413 size) is recorded
in `refusals` here; what intake refuses was already recorded by Hub.submit / submit_from_partner."""
from __future__ import annotations

import re

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hub import metrics
from hub.errors import InputError, NotFound
from hub.refusals import record_refusal

_INTAKE = re.compile(r"^/api/v1/(?:messages|partners/([^/]+)/messages)/?$")


def problem(status: int, title: str, detail: str, errors: list[dict] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def input_error_handler(request: Request, exc: InputError) -> JSONResponse:
    metrics.REFUSED.labels(type(exc).__name__).inc()
    intake = _INTAKE.match(request.url.path) if request.method == "POST" else None
    if intake and not getattr(exc, "refusal_recorded", False):
        declared = request.headers.get("content-length", "")
        partner = intake.group(1).upper() if intake.group(1) else None
        await run_in_threadpool(record_refusal, request.app.state.hub, channel="rest", partner=partner, error=exc,
                                data=None, size=int(declared) if declared.isdigit() else None)
    return problem(exc.status, exc.title, exc.detail, [p.as_dict() for p in exc.problems])


async def not_found_handler(_request: Request, exc: NotFound) -> JSONResponse:
    return problem(404, "Not found", str(exc))

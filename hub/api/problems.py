"""Errors as RFC 9457 problem details (application/problem+json)."""
from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from hub import metrics
from hub.errors import InputError, NotFound


def problem(status: int, title: str, detail: str, errors: list[dict] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def input_error_handler(_request: Request, exc: InputError) -> JSONResponse:
    metrics.REFUSED.labels(type(exc).__name__).inc()
    return problem(exc.status, exc.title, exc.detail, [p.as_dict() for p in exc.problems])


async def not_found_handler(_request: Request, exc: NotFound) -> JSONResponse:
    return problem(404, "Not found", str(exc))

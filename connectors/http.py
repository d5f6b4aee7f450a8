"""What the HTTP doors and connectors share: which statuses are worth a retry, Retry-After, and request
bodies read with care (the media type checked and the size capped before anything is parsed), used by
every door that takes a document: the hub's REST and SOAP intake, and the sandbox partners."""
from __future__ import annotations

import email.utils
import time

from starlette.requests import Request

from hub.errors import MessageTooLarge, Problem, UnsupportedMediaType

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def media_type(request: Request) -> str:
    """The Content-Type without its parameters, lower-cased ("" when missing)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, *, max_bytes: int, media_types: tuple[str, ...] | None = None,
                    what: str = "request") -> bytes:
    """The body, refused with 415 when its media type is not one of `media_types`, and with 413 as soon as
    it is over `max_bytes` (announced by Content-Length, or while streaming: never read whole)."""
    if media_types is not None and media_type(request) not in media_types:
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(media_types)}, not "
                                   f"{media_type(request) or 'missing'!r}",
                                   [Problem(f"Content-Type must be {' or '.join(media_types)}")])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MessageTooLarge(f"{what} is {declared} bytes; the limit is {max_bytes} bytes",
                              [Problem(f"over {max_bytes} bytes")])
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise MessageTooLarge(f"{what} is over the limit of {max_bytes} bytes", [Problem(f"over {max_bytes} bytes")])
        chunks.append(chunk)
    return b"".join(chunks)

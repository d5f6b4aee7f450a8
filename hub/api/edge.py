"""What every request must be before a route sees it, and errors of the HTTP layer as problem+json.

`RequestBounds` (pure ASGI middleware, inside the token check):

    a path or query parameter holding a character the hub cannot carry      400 naming the parameter
      (hub/xml/text.py: a control character such as NUL, a surrogate, U+FFFE/U+FFFF, or a Unicode
      direction override or isolate such as U+202E): refused before anything reaches the database
    a body other than XML over HUB_MAX_JSON_BYTES (announced or streamed)   413, before it is parsed
    a JSON body holding such a character in any string (key or value)      400 naming the field
      (tabs, line feeds and carriage returns are text and allowed in a body)
    an XML body over HUB_MAX_MESSAGE_BYTES, whichever route it goes to      413 (the XML doors refuse and
                                                                            record it; a JSON route too)

Paths under `exempt` (the connectors' inbound endpoints, e.g. /soap) answer in their own protocol and
check their own input (connectors/soap/inbound.py).

Handlers: a request that does not validate (FastAPI's RequestValidationError) is a 422 problem naming
each field and what is wrong, never echoing the value sent; JSON that does not parse is a 400
problem; the HTTP layer's own errors (404 no route, 405 method) are problems too.
"""
from __future__ import annotations

import http
import json
import logging
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import compile_path

from hub.api.problems import input_problem, problem
from hub.errors import InputError, MessageTooLarge, Problem, UnfitCharacter
from hub.xml.text import shown, unfit_character

log = logging.getLogger("hub.api.edge")
XML_MEDIA_TYPES = ("application/xml", "text/xml")


class RequestBounds:
    """Pure ASGI middleware: the checks above, before routing and body parsing."""

    def __init__(self, app, *, hub, paths, exempt: tuple[str, ...] = ()):
        """`paths`: a function giving the application's path templates ("/api/v1/cases/{reference}", ...)."""
        self.app, self.settings, self.paths, self.exempt = app, hub.settings, paths, exempt
        self._patterns = None

    async def __call__(self, scope, receive, send):
        try:
            await self._bounded(scope, receive, send)
        except ClientDisconnect:  # the client went (or the server cut a late body off): nobody to answer
            log.info("%s %s: the client disconnected before its request was read", scope.get("method"),
                     shown(scope.get("path", ""), 200))

    async def _bounded(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        try:
            self.check_parameters(scope)
        except UnfitCharacter as exc:
            await input_problem(exc)(scope, receive, send)
            return
        media = media_type_of(scope)
        if media in XML_MEDIA_TYPES:
            await self.app(scope, _capped(receive, self.settings.max_message_bytes), send)
            return
        try:
            body = await _read_capped(scope, receive, self.settings.max_json_bytes)
            if body and (media in ("", "application/json") or media.endswith("+json")):
                _check_json_strings(body)
        except InputError as exc:  # MessageTooLarge, UnfitCharacter
            await input_problem(exc)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def check_parameters(self, scope) -> None:
        """Raises UnfitCharacter for the first path or query parameter holding a refused character."""
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
            for text in (name, value):
                character = unfit_character(text, parameter=True)
                if character:
                    raise UnfitCharacter(f"query parameter {shown(name, 40)}", character)
        character = unfit_character(scope["path"], parameter=True)
        if character:
            raise UnfitCharacter(self.path_parameter(scope), character)

    def path_parameter(self, scope) -> str:
        """'path parameter NAME' for the parameter of a documented path holding the refused character, else
        'the path'."""
        if self._patterns is None:
            self._patterns = [compile_path(path)[0] for path in self.paths()]
        for pattern in self._patterns:
            matched = pattern.match(scope["path"])
            for name, value in (matched.groupdict() if matched else {}).items():
                if unfit_character(value, parameter=True):
                    return f"path parameter {name}"
        return "the path"


def media_type_of(scope) -> str:
    """A request's media type, from its Content-Type header: lower case, without parameters ("" when none)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


def _declared_length(scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _read_capped(scope, receive, max_bytes: int) -> bytes:
    """The whole body (at most `max_bytes`: MessageTooLarge as soon as it is announced or read over)."""
    declared = _declared_length(scope)
    if declared is not None and declared > max_bytes:
        raise MessageTooLarge(f"the request body is {declared} bytes; the limit is {max_bytes} bytes",
                              [Problem(f"over {max_bytes} bytes", path="body")])
    if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and not declared:
        return b""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise MessageTooLarge(f"the request body is over the limit of {max_bytes} bytes",
                                  [Problem(f"over {max_bytes} bytes", path="body")])
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A receive that gives `body` once, then waits on the real one (for the disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def _capped(receive, max_bytes: int):
    """A receive that raises MessageTooLarge once more than `max_bytes` came (an XML door records it)."""
    size = 0

    async def capped():
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > max_bytes:
            raise MessageTooLarge(f"the request body is over the limit of {max_bytes} bytes",
                                  [Problem(f"over {max_bytes} bytes")])
        return message
    return capped


def _check_json_strings(body: bytes) -> None:
    """Raises UnfitCharacter for the first JSON string (key or value) holding a refused character. JSON that does
    not parse is left to the route (a 400 problem, `validation_error_handler`)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return
    stack = [("body", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            character = unfit_character(value)
            if character:
                raise UnfitCharacter(f"field {where}", character)
        elif isinstance(value, dict):
            for key, item in value.items():
                character = unfit_character(key)
                if character:
                    raise UnfitCharacter(f"a field name in {where}", character)
                stack.append((f"{where}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))


def _location(loc) -> str:
    return ".".join(str(part) for part in loc)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and what is wrong with it, without the value sent (which may be large or
    personal); JSON that does not parse is 400."""
    errors = exc.errors()
    unparsable = [e for e in errors if e.get("type") == "json_invalid"]
    if unparsable:
        where = unparsable[0].get("loc", ("body", 0))[-1]
        reason = (unparsable[0].get("ctx") or {}).get("error", "not JSON")
        return problem(400, "Malformed JSON", f"the body is not JSON: {reason} at position {where}",
                       [Problem(f"{reason}", path="body").as_dict()])
    problems = [Problem(str(e.get("msg", "invalid")), path=_location(e.get("loc", ()))).as_dict() for e in errors[:50]]
    fields = ", ".join(dict.fromkeys(p["path"] for p in problems))
    return problem(422, "Request validation failed", f"{len(errors)} problem(s) with: {fields}", problems)


async def http_error_handler(_request: Request, exc: HTTPException) -> JSONResponse:
    """The HTTP layer's own errors (404 no such route, 405 method not allowed, 400 body not readable)."""
    try:
        title = http.HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    response = problem(exc.status_code, title, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response

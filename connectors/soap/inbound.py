"""The hub's inbound SOAP 1.1 endpoints, for partners that call the hub over SOAP (DGSN's status
callbacks, JUSTICE's service requests). A party has one when its `connection.inbound_wsdl` names a
WSDL under schemas/ (SoapConnector.Config). Every SoapConnector offers this one router
(`inbound_router()`, the InboundRoutes capability), which the hub mounts once in its API.

    POST /soap/{CODE}               text/xml SOAP envelope; its Body holds ONE document in the partner's own
                                    format with the partner's enveloped signature. The document is taken out
                                    of the envelope as it is (exclusive c14n keeps its signature valid) and
                                    goes through the same door as REST: hub.receive(Arrival("soap", ...))
                                    (validation, signature, deduplication, one commit, routing).
        200                         envelope whose Body holds the hub's signed env:Receipt, byte for byte;
                                    the same document again gets the same receipt (X-Duplicate: true; one
                                    DUPLICATE timeline entry per message, every copy counted)
        415 soap:Client fault       not text/xml
        413 soap:Client fault       over HUB_MAX_MESSAGE_BYTES (refused before reading it all), or a soap:Header
                                    over 32 KiB
        400 soap:Client fault       refused: malformed, DOCTYPE, over the depth or element cap, not an envelope,
                                    not exactly one Body, a SOAPAction that is not the WSDL's operation for the
                                    document, schema, signature, no route...; `detail` lists the problems with
                                    line (in the envelope as sent) and path
        400 soap:MustUnderstand     a header entry marked mustUnderstand="1" (the hub processes none)
        403 soap:Client fault       not a party that calls the hub over SOAP (the code as sent, escaped; such
                                    refusals counted each, recorded once a minute), or a type it may not send
        409 soap:Client fault       same document id with other bytes
        429 soap:Server fault       the outbox of a partner the document goes to is full (hub/intake/backpressure.py):
                                    transient (RetryAfter in `detail`, Retry-After header), nothing stored
                                    Every refusal is recorded once in `refusals` (hub/intake/door.py), without
                                    the bytes: intake's by the door, the envelope's here.
        500 soap:Server fault       the hub failed; transient (RetryAfter in `detail`) when it could not
                                    store the document right now: send the same document again later
    GET  /soap/{CODE}?wsdl          the partner's inbound WSDL, soap:address set to the URL requested and the
                                    schemas it imports pointed at /soap/schemas/ (zeep loads it from the hub)
    GET  /soap/schemas/{path}.xsd   the XSDs under schemas/, read-only (nothing else, no path traversal)

Opening the envelope and recording its refusals run off the event loop (run_in_threadpool); intake runs on it,
its commit awaited (hub/intake/door.py `receive_on_loop`).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from lxml import etree
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from connectors.soap.envelope import (CONTENT_TYPE, Fault, body_document_bytes, build_fault, check_header,
                                      parse_envelope, read_fault, wrap_document_bytes)
from connectors.http import read_body
from connectors.soap.wsdl import operations, render_wsdl
from hub.errors import InputError, NotAllowed, NotFound, NotUnderstood, Problem, SchemaInvalid, TryLater
from hub.intake.door import Arrival, receive_on_loop, refused
from hub.settings import PROJECT_ROOT
from hub.xml.text import shown, unfit_character

log = logging.getLogger("hub.soap")

RETRY_AFTER_SECONDS = 5           # what a transient fault asks the partner to wait
UNKNOWN_ENDPOINT_RECORD_SECONDS = 60   # refusals at /soap/<not a SOAP partner>: one row a minute, all counted
_STORAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)   # the database cannot take the write now


def inbound_wsdl(hub, code: str) -> Path | None:
    """The WSDL of the endpoint `code` calls, or None when that party does not call the hub over SOAP."""
    party = hub.config.parties.get(code)
    name = party.connection.inbound_wsdl if party is not None and party.transport == "soap" else None
    return Path(hub.settings.schemas_dir) / name if name else None


SOAP_RESPONSES = {
    200: "SOAP envelope holding the hub's signed env:Receipt",
    400: "soap:Client fault: malformed, forbidden XML, two Bodies, a SOAPAction not the document's operation, "
         "schema, signature... (soap:MustUnderstand: a header entry marked mustUnderstand, which the hub does "
         "not process)",
    403: "soap:Client fault: not a party that calls the hub over SOAP, or a type it may not send",
    409: "soap:Client fault: same document id with other content",
    413: "soap:Client fault: over the size cap, or a soap:Header over 32 KiB",
    415: "soap:Client fault: not text/xml",
    429: "soap:Server fault: a partner's outbox is full (transient: RetryAfter)",
    500: "soap:Server fault: the hub failed (transient when RetryAfter)"}
EXAMPLE = PROJECT_ROOT / "schemas" / "examples" / "DemandeSignification.soap.xml"


def _example() -> dict:
    """The OpenAPI example of a request (JUSTICE's), when the file is there."""
    return {"example": EXAMPLE.read_text(encoding="utf-8")} if EXAMPLE.is_file() else {}


@cache
def soap_router() -> APIRouter:
    """The /soap routes, one router per process whichever SOAP parties offer it."""
    router = APIRouter(prefix="/soap", tags=["soap"])

    @router.get("/schemas/{path:path}", name="soap_schema", summary="An XSD imported by an inbound WSDL",
                response_class=Response,
                responses={200: {"description": "The XSD", "content": {"application/xml": {"schema": {"type": "string"}}}}})
    def schema(path: str, request: Request) -> Response:
        target = _schema_file(Path(request.app.state.hub.settings.schemas_dir), path)
        if target is None:
            raise NotFound(f"no schema {path!r}")
        return Response(target.read_bytes(), media_type="application/xml")

    @router.get("/{code}", summary="The inbound WSDL of a partner that calls the hub over SOAP (?wsdl)",
                response_class=Response,
                responses={200: {"description": "The WSDL", "content": {"text/xml": {"schema": {"type": "string"}}}}})
    async def wsdl(code: str, request: Request) -> Response:
        hub = request.app.state.hub
        path = inbound_wsdl(hub, code.upper())
        if path is None or "wsdl" not in request.query_params:
            raise NotFound(f"no SOAP endpoint for {code!r}" if path is None else f"append ?wsdl to get {code}'s WSDL")
        endpoint = str(request.url.replace(query=None, fragment=None))
        schemas_url = str(request.url_for("soap_schema", path=""))
        body = await run_in_threadpool(render_wsdl, path, Path(hub.settings.schemas_dir), endpoint=endpoint,
                                       schemas_url=schemas_url)
        return Response(body, media_type="text/xml; charset=utf-8")

    @router.post("/{code}", summary="A partner's signed document in a SOAP 1.1 envelope; answered with a receipt",
                 response_class=Response,
                 responses={status: {"description": description, "content": {"text/xml": {"schema": {"type": "string"}}}}
                            for status, description in SOAP_RESPONSES.items()},
                 openapi_extra={"requestBody": {"required": True, "description": "A SOAP 1.1 envelope whose Body "
                                                "holds one document in the partner's format, signed by the partner",
                                                "content": {"text/xml": {"schema": {"type": "string"},
                                                                         **_example()}}}})
    async def call(code: str, request: Request) -> Response:
        hub = request.app.state.hub
        code = code.upper()
        try:
            receipt = await _take_in(hub, code, request)
        except InputError as exc:
            # A refusal is the partner's fault: its 4xx status (400, 403, 409, 413, 415) with a soap:Client
            # fault (soap:MustUnderstand for a header entry it must understand), never 500, which says the hub
            # failed (SOAP clients such as zeep read the fault either way).
            code_name = "soap:MustUnderstand" if isinstance(exc, NotUnderstood) else "soap:Client"
            return fault_response(Fault(code_name, f"{exc.title}: {exc.detail}", problems=exc.problems), exc.status)
        except TryLater as exc:  # back-pressure (429): a transient soap:Server fault, RetryAfter and Retry-After
            return fault_response(Fault("soap:Server", f"{exc.title}: {exc.detail}", retry_after=exc.retry_after),
                                  exc.status, headers=exc.headers)
        except _STORAGE_ERRORS as exc:
            log.warning("SOAP request from %s not stored (%s); told to retry in %d s", code, type(exc).__name__,
                        RETRY_AFTER_SECONDS)
            return fault_response(Fault("soap:Server", "the hub cannot store the document right now; send it again",
                                        retry_after=RETRY_AFTER_SECONDS))
        except Exception:
            log.exception("SOAP request from %s failed", code)
            return fault_response(Fault("soap:Server", "the hub failed to process the document"))
        return Response(wrap_document_bytes(receipt.body), status_code=200, media_type=CONTENT_TYPE,
                        headers={"X-Message-Id": receipt.message_id,
                                 "X-Duplicate": "true" if receipt.duplicate else "false"})

    return router


async def _take_in(hub, code: str, request: Request):
    """The request's document through the door; returns the hub's intake.Receipt. What is refused before
    the door (no endpoint for `code`, media type, size, an envelope holding no document) is recorded here."""
    data, record = None, True
    try:
        if inbound_wsdl(hub, code) is None:
            # junk at /soap/<anything> is counted each time, recorded at most once a minute (nothing of it stored)
            record = _UNKNOWN_ENDPOINTS.due(hub)
            raise NotAllowed(f"{shown(code, 40)!r} is not a partner that calls the hub over SOAP",
                             [Problem("no inbound SOAP endpoint for this party", path=f"/soap/{shown(code, 40)}")])
        data = await _read_envelope(request, hub.settings.max_message_bytes)
        document, extracted = await run_in_threadpool(open_envelope, hub, code, data,
                                                      request.headers.get("soapaction"))
    except InputError as exc:
        declared = request.headers.get("content-length", "")
        await run_in_threadpool(refused, hub, "soap", exc, party=None if unfit_character(code, parameter=True)
                                else code, data=data, size=int(declared) if declared.isdigit() else None,
                                record=record)
        raise
    try:
        return await receive_on_loop(hub, Arrival("soap", data=extracted, partner=code))
    except InputError as exc:
        # the extracted document starts on line 2 (after its XML declaration); shift to the envelope's lines
        shift = (document.sourceline or 2) - (2 if extracted.startswith(b"<?xml") else 1)
        if shift and any(p.line for p in exc.problems):
            exc.problems = [Problem(p.message, line=p.line + shift if p.line else None, path=p.path)
                            for p in exc.problems]
        raise


def open_envelope(hub, code: str, data: bytes, action: str | None = None) -> tuple[etree._Element, bytes]:
    """The envelope's Body child (as parsed, for its line) and its bytes as they travelled, for intake.
    `action`: the SOAPAction header; when not empty, it must be an operation of the endpoint's WSDL whose
    input is the Body's document."""
    # the envelope adds two levels (Envelope, Body) and two elements around the document
    document = parse_envelope(data, max_bytes=hub.settings.max_message_bytes, what=f"SOAP request from {code}",
                              max_depth=hub.settings.max_xml_depth + 2, max_elements=hub.settings.max_xml_elements + 2)
    check_header(document)
    check_action(inbound_wsdl(hub, code), action, document)
    if read_fault(document) is not None:
        raise InputError(f"SOAP request from {code}: a soap:Fault is not a document the hub accepts",
                         [Problem("soap:Fault in a request", line=document.sourceline, path="/Envelope/Body/Fault")])
    return document, body_document_bytes(document)


class Throttle:
    """`due(key)` is True at most once every `seconds` for one key (monotonic clock, in this process); a
    key is held weakly (a hub)."""

    def __init__(self, seconds: float):
        self.seconds, self.last = seconds, weakref.WeakKeyDictionary()
        self.lock = threading.Lock()

    def due(self, key) -> bool:
        with self.lock:
            now = time.monotonic()
            if key in self.last and now - self.last[key] < self.seconds:
                return False
            self.last[key] = now
            return True


_UNKNOWN_ENDPOINTS = Throttle(UNKNOWN_ENDPOINT_RECORD_SECONDS)


def check_action(wsdl: Path, action: str | None, document: etree._Element) -> None:
    """Raises SchemaInvalid when a SOAPAction is given that is not the endpoint's operation for `document`."""
    action = (action or "").strip().strip('"')
    if not action:
        return  # none given: the document in the Body says what it is
    expected = operations(wsdl)
    if action not in expected:
        raise SchemaInvalid(f"SOAPAction {shown(action, 200)!r} is not an operation of this endpoint (its operations: "
                            f"{', '.join(sorted(expected))})", [Problem("unknown SOAPAction", path="SOAPAction")])
    if document.tag != expected[action]:
        raise SchemaInvalid(f"SOAPAction {action!r} takes {expected[action]}, but the Body holds "
                            f"{shown(str(document.tag), 200)}", [Problem("SOAPAction does not match the document",
                                                                         line=document.sourceline,
                                                                         path="/Envelope/Body/*")])


def fault_response(fault: Fault, status: int = 500, headers: dict[str, str] | None = None) -> Response:
    return Response(build_fault(fault), status_code=status, media_type=CONTENT_TYPE, headers=headers)


async def _read_envelope(request: Request, max_bytes: int) -> bytes:
    """The request body: text/xml (SOAP 1.1) only, refused as soon as it is over the cap."""
    return await read_body(request, max_bytes=max_bytes, media_types=("text/xml",))


def _schema_file(schemas_dir: Path, path: str) -> Path | None:
    """The .xsd file under schemas/ that `path` names, or None (anything else, or outside schemas/)."""
    root = schemas_dir.resolve()
    try:
        target = (root / path).resolve()
    except (OSError, ValueError):
        return None
    if target.suffix != ".xsd" or not target.is_relative_to(root) or not target.is_file():
        return None
    return target

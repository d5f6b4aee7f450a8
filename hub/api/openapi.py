"""The OpenAPI document as the hub really answers (GET /openapi.json, /docs).

FastAPI documents what a route declares; the hub's layers answer more than that. `openapi(app)` adds to
every operation the answers that come from those layers, each an application/problem+json Problem:

    under /api                         401 no valid token (hub/api/auth.py), 403 role or scope,
                                       503 database unavailable (hub/api/problems.py)
    with parameters or a body          400 a character refused, 422 validation (hub/api/edge.py)
    with path parameters               404 nothing by that name
    with a JSON body                   413 over HUB_MAX_JSON_BYTES
    POST under /api                    429 a partner's outbox full (back-pressure: what is submitted goes
                                       through intake)

and makes every documented error problem+json unless the route says otherwise (the SOAP door answers
faults in text/xml; /readyz's 503 is its JSON report). XML bodies and answers are declared by their
routes with `xml_body` and `XML_RECEIPT` below, with examples from schemas/examples/ (made by `hub sample`).
"""
from __future__ import annotations

import copy
from functools import cache

from fastapi.openapi.utils import get_openapi

from hub.settings import PROJECT_ROOT

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {
    "type": "object", "title": "Problem", "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "message": {"type": "string"}, "line": {"type": "integer"}, "path": {"type": "string"}}}},
    },
}
REASONS = {
    400: "Refused: a parameter or field holds a character the hub does not accept, or the input is malformed",
    401: "No valid API token (missing, malformed, unknown, expired or revoked)",
    403: "The token's role or scope does not allow this",
    404: "Nothing by that name",
    409: "Conflicts with what is stored",
    410: "Gone",
    413: "The body is over the size cap",
    415: "Unsupported media type",
    422: "A parameter or field does not validate (named, without the value sent)",
    429: "A partner's outbox is full: send the same request again after Retry-After",
    503: "The database cannot be reached right now: send the same request again after Retry-After",
}
EXAMPLES = PROJECT_ROOT / "schemas" / "examples"


@cache
def example(name: str) -> str:
    """An example document of schemas/examples/ ("" when missing: the document is still served)."""
    path = EXAMPLES / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def xml_body(description: str, media_types: tuple[str, ...] = ("application/xml",), example_file: str | None = None
             ) -> dict:
    """`openapi_extra` of a route that reads an XML body itself (not through a FastAPI parameter)."""
    content = {}
    for media in media_types:
        content[media] = {"schema": {"type": "string", "format": "binary"}}
        if example_file and example(example_file):
            content[media]["example"] = example(example_file)
    return {"requestBody": {"required": True, "description": description, "content": content}}


XML_RECEIPT = {"description": "Accepted: the hub's signed receipt (env:Receipt)",
               "content": {"application/xml": {"schema": {"type": "string"}}}}


def problem_response(status: int, description: str | None = None) -> dict:
    return {"description": description or REASONS.get(status, "Refused"),
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def openapi(app) -> dict:
    """The application's OpenAPI document, built once, with the answers of the hub's layers added."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
        app.openapi_schema = complete(document)
    return app.openapi_schema


def complete(document: dict) -> dict:
    """`document` with every operation's answers as above (a new dict)."""
    document = copy.deepcopy(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation)
    return document


def _complete_operation(path: str, method: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    statuses = set()
    if path.startswith("/soap"):
        # the inbound endpoints answer in their own protocol (faults, declared by their routes) and check
        # their own input; a GET for what is not there is a 404 problem
        statuses |= {404} if method == "get" else set()
        responses.pop("422", None)  # their parameters are plain strings: nothing for FastAPI to refuse
    else:
        if path.startswith("/api"):
            statuses |= {401, 403, 503}
            if method == "post":
                statuses.add(429)
        if parameters or body:
            statuses |= {400, 422}
        if any(p.get("in") == "path" for p in parameters):
            statuses.add(404)
        if "application/json" in body:
            statuses.add(413)
    for status in statuses:
        responses.setdefault(str(status), problem_response(status))
    for status, response in responses.items():
        if status == "422":
            responses[status] = problem_response(422)
        elif status[0] in "45" and not response.get("content"):
            response["content"] = problem_response(int(status))["content"]

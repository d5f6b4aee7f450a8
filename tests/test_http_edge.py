"""The running hub's HTTP edge and the truth of its OpenAPI document.

The edge: what any request must be before a route sees it (hub/api/edge.py, hub/api/server.py). Body
caps, validation errors that do not echo the input, bounded numbers, and characters refused in every
path and query parameter (on PostgreSQL a NUL reached the database as a 500).

The document: every operation it lists, driven with generated input (NUL and control characters,
direction overrides, huge and negative numbers, `1e999999`, long strings, broken JSON and XML), never
answers 5xx, and answers only statuses and media types the document gives for it; every error it
documents is application/problem+json (the SOAP door's are SOAP faults, text/xml). A few examples per
operation under `make test`, ten times as many under `make test-full` (`examples`).

One shared hub per database: SQLite, and PostgreSQL where a NUL byte reached the database as a 500."""
from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from conftest import examples

pytestmark = pytest.mark.shared_hub

PROBLEM = "application/problem+json"
CITIZEN = {"post_code": "FR-PARIS", "country": "FR", "city": "Paris", "given_name_latin": "Ali",
           "family_name_latin": "Amrani", "given_name_arabic": "علي", "family_name_arabic": "العمراني",
           "birth_date": "1980-01-02", "sex": "M", "address_lines": "1 rue de la Paix"}

# every route taking a path or query parameter that reaches the database, with the parameter to spoil
PARAMETERS = [
    ("GET", "/api/v1/messages/{}", None, "path parameter message_id"),
    ("GET", "/api/v1/messages/{}/payload", None, "path parameter message_id"),
    ("GET", "/api/v1/messages/M-1/payload?partner={}&part=sent", None, "query parameter partner"),
    ("GET", "/api/v1/messages/M-1?sender={}", None, "query parameter sender"),
    ("POST", "/api/v1/messages/{}/resend", None, "path parameter message_id"),
    ("GET", "/api/v1/messages?type={}", None, "query parameter type"),
    ("GET", "/api/v1/messages?state={}", None, "query parameter state"),
    ("GET", "/api/v1/messages?partner={}", None, "query parameter partner"),
    ("GET", "/api/v1/messages?correlation_id={}", None, "query parameter correlation_id"),
    ("GET", "/api/v1/cases/{}", None, "path parameter reference"),
    ("GET", "/api/v1/cases?post_code={}", None, "query parameter post_code"),
    ("GET", "/api/v1/cases?status={}", None, "query parameter status"),
    ("GET", "/api/v1/cases?service={}", None, "query parameter service"),
    ("GET", "/api/v1/citizens/{}", None, "path parameter registration_id"),
    ("GET", "/api/v1/posts/{}", None, "path parameter code"),
    ("GET", "/api/v1/posts?country={}", None, "query parameter country"),
    ("GET", "/api/v1/life-certificates/batches/{}", None, "path parameter reference"),
    ("GET", "/api/v1/life-certificates/batches?status={}", None, "query parameter status"),
    ("POST", "/api/v1/cases/{}/handover", {}, "path parameter reference"),
    ("POST", "/api/v1/cases/{}/outcome", {"outcome": "SERVED"}, "path parameter reference"),
    ("POST", "/api/v1/partners/{}/poll", None, "path parameter partner"),
    ("POST", "/api/v1/posts/{}/close", {"reason": "merged"}, "path parameter code"),
    ("GET", "/api/v1/partner/messages/{}?partner=NARSA", None, "path parameter message_id"),
    ("GET", "/api/v1/partner/messages?partner=NARSA&type={}", None, "query parameter type"),
    ("GET", "/api/v1/partner/messages?partner=NARSA&correlation_id={}", None, "query parameter correlation_id"),
    ("GET", "/api/v1/partner/messages?partner={}", None, "query parameter partner"),
]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM, response.headers
    return response.json()


@pytest.mark.both_databases
def test_refused_characters_in_any_parameter_are_400_naming_it(client):
    for method, path, body, named in PARAMETERS:
        for spoiled in ("%00", "A%00B", "%01", "A%14B", "%7F", "%E2%80%AE"):  # NUL, SOH, DC4, DEL, U+202E
            response = client.request(method, path.format(spoiled), json=body)
            problem = assert_problem(response, 400)
            assert problem["title"] == "Character not accepted" and problem["detail"].startswith(named), \
                (method, path, spoiled, problem)


@pytest.mark.both_databases
def test_refused_characters_in_a_json_body_are_400_naming_the_field(client):
    problem = assert_problem(client.post("/api/v1/citizens", json={**CITIZEN, "given_name_latin": "Ali\u0001\u0000"}),
                             400)
    assert problem["detail"].startswith("field body.given_name_latin holds U+0001"), problem
    problem = assert_problem(client.post("/api/v1/citizens", json={**CITIZEN, "city": "Par\u202eis"}), 400)
    assert problem["errors"] == [{"message": "U+202E is not accepted here", "path": "field body.city"}]


def test_a_header_over_the_cap_is_431_before_any_route(anonymous):
    response = anonymous.get("/healthz", headers={"X-Big": "a" * 20_000})
    assert_problem(response, 431)
    assert anonymous.get("/healthz").status_code == 200


def test_json_bodies_are_capped_413_and_anonymous_callers_get_401_first(client, anonymous):
    big = {**CITIZEN, "address_lines": "x" * 70_000}
    assert_problem(anonymous.post("/api/v1/citizens", json=big), 401)
    problem = assert_problem(client.post("/api/v1/citizens", json=big), 413)
    assert "65536" in problem["detail"]

    def chunks():  # no Content-Length: counted as it streams
        yield json.dumps(big).encode()
    assert_problem(client.post("/api/v1/citizens", content=chunks(), headers={"Content-Type": "application/json"}), 413)


def test_validation_errors_name_the_field_without_echoing_the_value(client):
    secret = "BK" + "9" * 50_000
    response = client.post("/api/v1/citizens", json={**CITIZEN, "cnie": secret})
    problem = assert_problem(response, 422)
    assert len(response.content) < 2_000 and "999999" not in response.text
    assert problem["errors"][0]["path"] == "body.cnie" and "pattern" in problem["errors"][0]["message"]


@pytest.mark.parametrize("raw", [b'{"post_code": 1e999999}', b'{"year": -1e999999}', b"[" * 5000 + b"]" * 5000])
def test_huge_numbers_and_deep_json_are_4xx_not_500(client, raw):
    response = client.post("/api/v1/cases/civil-status-extract", content=raw,
                           headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and response.headers["content-type"] == PROBLEM, response.text[:300]


def test_unparsable_json_is_a_400_problem(client):
    problem = assert_problem(client.post("/api/v1/citizens", content=b'{"city": ',
                                         headers={"Content-Type": "application/json"}), 400)
    assert problem["title"] == "Malformed JSON"


@pytest.mark.parametrize("query", ["/api/v1/messages?offset=99999999999999999999",
                                   "/api/v1/messages?before=99999999999999999999",
                                   "/api/v1/messages?partner=NARSA&offset=9223372036854775807",
                                   "/api/v1/life-certificates/batches?limit=-1",
                                   "/api/v1/cases?limit=99999999999999999999",
                                   "/api/v1/messages?type=" + "T" * 5000])
def test_numbers_and_lengths_out_of_bounds_are_422(client, query):
    problem = assert_problem(client.get(query), 422)
    assert problem["errors"][0]["path"].startswith("query."), problem


def test_no_route_and_wrong_method_are_problems(client):
    assert_problem(client.get("/api/v1/nothing-here"), 404)
    assert_problem(client.delete("/healthz"), 405)


# -- the OpenAPI document ---------------------------------------------------------------------------

HUGE = "__HUGE_NUMBER__"
SPECIAL = ["\x00", "A\x00B", "\x01", "A\x14B", "\x7f", "\u202e", "\ufeff", "\t", "9" * 25, "-1", "0", "1e999999",
           "NaN", "x" * 3000, "' OR 1=1 --", "../../etc/passwd", "%00", "REGISTRY", "FR-PARIS"]
texts = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=20),
                  st.integers(min_value=-10**25, max_value=10**25).map(str))
json_values = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=20), st.just(HUGE), st.none(), st.booleans(),
                        st.integers(min_value=-10**25, max_value=10**25),
                        st.floats(allow_nan=False, allow_infinity=False), st.lists(st.text(max_size=5), max_size=3))
SETTINGS = hsettings(max_examples=examples(6), deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def operations(document: dict):
    for path, methods in sorted(document["paths"].items()):
        for method, operation in sorted(methods.items()):
            yield path, method, operation


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def parameter_values(document: dict, parameter: dict):
    schema = resolve(document, parameter.get("schema", {}))
    options = [schema.get("enum", []) or [], *(s.get("enum", []) for s in schema.get("anyOf", []))]
    known = [value for values in options for value in values]
    kinds = {schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))}
    strategies = [texts]
    if known:
        strategies.append(st.sampled_from(known))
    if "integer" in kinds:
        strategies.append(st.integers(min_value=-10**21, max_value=10**21).map(str))
    if "boolean" in kinds:
        strategies.append(st.sampled_from(["true", "false", "yes"]))
    values = st.one_of(*strategies)
    # a path value holding "/" (or a dot segment) names another path, not this operation's parameter: such
    # requests are the router's (test_no_route_and_wrong_method_are_problems)
    return values.filter(lambda v: v not in ("", ".", "..") and "/" not in v) if parameter["in"] == "path" else values


def json_body(document: dict, schema: dict):
    """Raw JSON bytes: the schema's fields with generated values (`1e999999` among them), or junk."""
    schema = resolve(document, schema)
    fields = st.fixed_dictionaries({}, optional={name: json_values for name in schema.get("properties", {})})
    shaped = fields.map(lambda d: json.dumps(d).replace(f'"{HUGE}"', "1e999999").encode())
    junk = st.sampled_from([b"", b"{", b"[]", b"null", b'{"a": 1e999999}', b"[" * 3000 + b"]" * 3000,
                            b'"\\u0000"', b"\xff\xfe"])
    return st.one_of(shaped, junk)


def xml_body(example: str):
    data = example.encode() if example else b"<x/>"
    mutated = st.tuples(st.integers(0, max(len(data) - 1, 0)), st.sampled_from([b"\x00", b"\x01", b"<", b"&",
                                                                               b"\xe2\x80\xae", b""])).map(
        lambda t: data[:t[0]] + t[1] + data[t[0] + 1:])
    return st.one_of(st.just(data), mutated, st.binary(max_size=200),
                     st.sampled_from([b"", b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"]))


@st.composite
def requests_for(draw, document: dict, path: str, operation: dict):
    url, params = path, {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", quote(draw(parameter_values(document, parameter)),
                                                                   safe=""))
        elif parameter["in"] == "query" and (parameter.get("required") or draw(st.booleans())):
            params[parameter["name"]] = draw(parameter_values(document, parameter))
    headers, content = {}, None
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        media = draw(st.sampled_from(sorted(body)))
        headers["Content-Type"] = media
        if "json" in media:
            content = draw(json_body(document, body[media].get("schema", {})))
        else:
            content = draw(xml_body(body[media].get("example", "")))
    return url, params, headers, content


def media_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


@pytest.mark.both_databases
def test_every_operation_answers_only_what_the_document_says(client):
    document = client.get("/openapi.json").json()
    checked = 0
    for path, method, operation in operations(document):
        responses = operation["responses"]

        @SETTINGS
        @given(request=requests_for(document, path, operation))
        def check(request):
            url, params, headers, content = request
            response = client.request(method.upper(), url, params=params, headers=headers, content=content)
            where = f"{method.upper()} {url} {params} {content[:200] if content else ''!r}"
            if (path, response.status_code) != ("/readyz", 503):  # not ready: no partner runs here, as it says
                assert response.status_code < 500, f"{where} -> {response.status_code} {response.text[:500]}"
            documented = responses.get(str(response.status_code))
            assert documented is not None, f"{where} -> {response.status_code} is not documented: {response.text[:300]}"
            media = documented.get("content", {})
            if media:
                assert media_type(response) in media, (f"{where} -> {response.status_code} "
                                                       f"{media_type(response)}, documented {sorted(media)}")
        check()
        checked += 1
    assert checked >= 25, "every operation of the document"


def test_every_documented_error_is_a_problem_and_xml_bodies_are_described(client):
    document = client.get("/openapi.json").json()
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                media = set(response.get("content", {}))
                expected = {"text/xml"} if path.startswith("/soap") and method == "post" else {"application/problem+json"}
                if path == "/readyz":
                    expected = {"application/json"}
                assert media == expected, (path, method, status, media)
        if path.startswith("/api"):
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
    submit = document["paths"]["/api/v1/messages"]["post"]
    assert set(submit["responses"]["202"]["content"]) == {"application/xml"}
    assert "LicenceAuthenticationRequest" in submit["requestBody"]["content"]["application/xml"]["example"]
    assert {"409", "413", "415", "429"} <= set(submit["responses"])
    assert "text/xml" in document["paths"]["/soap/{code}"]["post"]["requestBody"]["content"]
    assert set(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}


def test_the_documented_examples_are_valid_documents():
    from connectors.soap.envelope import parse_envelope
    from hub.api.openapi import EXAMPLES
    from hub.settings import PROJECT_ROOT
    from hub.xml.safe import parse_untrusted
    from hub.xml.schemas import SchemaSet
    schemas = SchemaSet(PROJECT_ROOT / "schemas")
    canonical = parse_untrusted((EXAMPLES / "LicenceAuthenticationRequest.xml").read_bytes(), max_bytes=1 << 20)
    schemas.validate(canonical, "canonical")
    from hub.xml.envelope import business_document, check_binding, read_header
    check_binding(read_header(canonical), business_document(canonical))  # its header is the one it signed
    soap = parse_envelope((EXAMPLES / "DemandeSignification.soap.xml").read_bytes(), max_bytes=1 << 20)
    schemas.validate(soap, "partners/justice/plis-judiciaires.xsd")

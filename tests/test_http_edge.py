"""The running hub's HTTP edge: what any request must be before a route sees it (hub/api/edge.py,
hub/api/server.py). Body caps, validation errors that do not echo the input, bounded numbers, and
characters refused in every path and query parameter (on PostgreSQL a NUL reached the database as a 500)."""
from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.shared_hub

PROBLEM = "application/problem+json"
CITIZEN = {"post_code": "FR-PARIS", "country": "FR", "city": "Paris", "given_name_latin": "Ali",
           "family_name_latin": "Amrani", "given_name_arabic": "علي", "family_name_arabic": "العمراني",
           "birth_date": "1980-01-02", "sex": "M"}

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
]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM, response.headers
    return response.json()


@pytest.mark.both_databases
@pytest.mark.parametrize("method, path, body, named", PARAMETERS, ids=[p[1] for p in PARAMETERS])
def test_refused_characters_in_any_parameter_are_400_naming_it(client, method, path, body, named):
    for spoiled in ("%00", "A%00B", "%01", "A%14B", "%7F", "%E2%80%AE"):  # NUL, SOH, DC4, DEL, U+202E
        response = client.request(method, path.format(spoiled), json=body)
        problem = assert_problem(response, 400)
        assert problem["title"] == "Character not accepted" and problem["detail"].startswith(named), problem


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

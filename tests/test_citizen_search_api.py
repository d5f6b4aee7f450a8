"""GET /api/v1/citizens through a running hub: masked pages linked by next_cursor, refusals that name the parameter
(400, never a 500), and a consular agent who never sees another post's citizen. The search itself is tested in
tests/test_citizen_search.py; the citizens here are seeded through the service layer (this is not about
registration)."""
from __future__ import annotations

import datetime as dt

import pytest

from registry import service

pytestmark = pytest.mark.shared_hub

PARIS, MADRID = "FR-PARIS", "ES-MADRID"


def _seed(running_hub, family: str, family_ar: str, *, count: int = 1, post: str = PARIS) -> list[str]:
    with running_hub.hub.sessions.begin() as session:
        return [service.register_citizen(
            session, post_code=post, given_name_latin="Nadia", family_name_latin=family, given_name_arabic="نادية",
            family_name_arabic=family_ar, birth_date=dt.date(1979, 9, 30), sex="F", country=post[:2],
            city="Paris", cnie=None, passport_number=None, email="nadia@example.org").registration_id
            for _ in range(count)]


def test_pages_are_masked_and_linked_by_their_cursor(running_hub, client):
    ids = _seed(running_hub, "Benkiranez", "بنكيرانز", count=3)
    first = client.get("/api/v1/citizens", params={"q": "بنكيرانز ناديه", "limit": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [c["registration_id"] for c in body["citizens"]] == ids[:2]
    shown = body["citizens"][0]
    assert shown["family_name_latin"] == "Benkiranez" and shown["email"] == "n***@example.org"
    assert shown["birth_date"] == "1979-**-**"
    second = client.get("/api/v1/citizens", params={"q": "بنكيرانز ناديه", "limit": 2, "cursor": body["next_cursor"]})
    assert [c["registration_id"] for c in second.json()["citizens"]] == ids[2:]
    assert second.json()["next_cursor"] is None


@pytest.mark.parametrize("params, status, names", [
    ({"q": "n"}, 400, "q:"),
    ({"q": "Nadia\u202eBenkiranez"}, 400, "q"),
    ({"q": "Nadia\x00"}, 400, "q"),
    ({"q": "Nadia", "cursor": "not-a-cursor"}, 400, "cursor:"),
    ({"q": "x" * 201}, 422, "q"),
    ({"birth_date": "1979-02-30"}, 422, "birth_date"),
    ({"post_code": "PARIS'--"}, 422, "post_code"),
    ({"limit": 1000}, 422, "limit"),
])
def test_a_bad_parameter_is_refused_naming_it(client, params, status, names):
    response = client.get("/api/v1/citizens", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert names in response.text
    if status == 400 and names.endswith(":"):
        assert response.json()["errors"][0]["path"] == names[:-1]


def test_an_agent_finds_only_their_posts_citizens(running_hub, client_as):
    ours = _seed(running_hub, "Ouarzaziya", "ورزازية")
    theirs = _seed(running_hub, "Ouarzaziya", "ورزازية", post=MADRID)
    agent = client_as("consular_agent", post=PARIS)
    found = agent.get("/api/v1/citizens", params={"q": "ouarzaziya"}).json()["citizens"]
    assert [c["registration_id"] for c in found] == ours
    listed = agent.get("/api/v1/citizens", params={"limit": 200}).json()["citizens"]
    assert theirs[0] not in {c["registration_id"] for c in listed}
    assert {c["post_code"] for c in listed} == {PARIS}
    refused = agent.get("/api/v1/citizens", params={"q": "ouarzaziya", "post_code": MADRID})
    assert refused.status_code == 403
    supervisor = client_as("supervisor")
    both = supervisor.get("/api/v1/citizens", params={"q": "ouarzaziya"}).json()["citizens"]
    assert [c["registration_id"] for c in both] == ours + theirs

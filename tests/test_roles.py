"""Each role can do what it should and nothing more, over real HTTP against a running hub.

The expected permissions are written here from the issue, independently of hub/access/tokens.py's table: a
route that answers 403 to a role that should be allowed, or anything but 403 to one that should not,
fails. Every /api route of the OpenAPI document must be in ROUTES, so a new route cannot escape.
Then the scopes: a consular agent of FR-PARIS refused the citizens and cases of ES-MADRID (reads and
actions), lists limited to their post and masked; payloads for integration and administrators only,
each view audited; the cause of death kept from supervisors; a partner's token speaking for itself only.

The module's tests share one hub; those that list or count everything the hub holds have one of their own."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.access.tokens import PERMISSIONS, ROLES
from hub.store.models import AuditEntry, Refusal
from support import licence_request, register_citizen, replace_text

pytestmark = pytest.mark.shared_hub

AGENT_POST, OTHER_POST = "FR-PARIS", "ES-MADRID"
EXPECTED = {  # permission -> roles allowed (the issue's list)
    "posts:read": {"consular_agent", "integration", "supervisor", "administrator"},
    "posts:manage": {"administrator"},  # issue 14: administrators create and close posts
    "registry:read": {"consular_agent", "supervisor", "administrator"},
    "registry:act": {"consular_agent", "administrator"},
    "messages:read": {"integration", "supervisor", "administrator"},
    "messages:payload": {"integration", "administrator"},
    "messages:resend": {"integration", "supervisor", "administrator"},
    "operations:run": {"integration", "administrator"},
    "messages:submit": {"partner", "administrator"},
    "partner-documents:submit": {"partner", "administrator"},
    "partner-messages:read": {"partner", "administrator"},  # issue 14: a partner reads its own traffic
    "console:overview": {"consular_agent", "integration", "supervisor", "administrator"},  # the console (issue 13)
    "refusals:read": {"integration", "supervisor", "administrator"},
    "alerts:read": {"integration", "supervisor", "administrator"},
    "audit:read": {"supervisor", "administrator"},
    "users:manage": {"administrator"},
    "mappings:read": {"integration", "administrator"},  # issue 15: mappings, their versions and checks
    "mappings:manage": {"integration", "administrator"},
}
LICENCE = {"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}
XML = {"Content-Type": "application/xml"}

# (method, path template, concrete path, json body or None, permission). Bodies are refused further on
# (404, 409, 422, 400) for roles that pass the permission check: only 403 (and 401) are about access.
ROUTES = [
    ("GET", "/api/v1/posts", "/api/v1/posts", None, "posts:read"),
    ("GET", "/api/v1/posts/{code}", "/api/v1/posts/FR-PARIS", None, "posts:read"),
    ("POST", "/api/v1/posts", "/api/v1/posts", {}, "posts:manage"),
    ("POST", "/api/v1/posts/{code}/close", "/api/v1/posts/ZZ-NOWHERE/close", {}, "posts:manage"),
    ("POST", "/api/v1/citizens", "/api/v1/citizens", {"post_code": AGENT_POST}, "registry:act"),
    ("GET", "/api/v1/citizens/{registration_id}", "/api/v1/citizens/MRE-9999999", None, "registry:read"),
    ("GET", "/api/v1/citizens", "/api/v1/citizens", None, "registry:read"),
    ("GET", "/api/v1/citizens/{registration_id}/history", "/api/v1/citizens/MRE-9999999/history", None,
     "registry:read"),
    ("POST", "/api/v1/citizens/{registration_id}/corrections", "/api/v1/citizens/MRE-9999999/corrections", {},
     "registry:act"),
    ("POST", "/api/v1/citizens/{registration_id}/death", "/api/v1/citizens/MRE-9999999/death", {}, "registry:act"),
    ("POST", "/api/v1/citizens/{registration_id}/transfer", "/api/v1/citizens/MRE-9999999/transfer", {},
     "registry:act"),
    ("GET", "/api/v1/cases", "/api/v1/cases", None, "registry:read"),
    ("GET", "/api/v1/services", "/api/v1/services", None, "registry:read"),
    ("GET", "/api/v1/cases/{reference}", "/api/v1/cases/LIC-2026-999999", None, "registry:read"),
    ("GET", "/api/v1/cases/{reference}/conversation", "/api/v1/cases/LIC-2026-999999/conversation", None,
     "registry:read"),
    ("GET", "/api/v1/monitor/deadlines", "/api/v1/monitor/deadlines", None, "registry:read"),
    ("POST", "/api/v1/cases/licence-authentication", "/api/v1/cases/licence-authentication", {}, "registry:act"),
    ("POST", "/api/v1/cases/consular-registration", "/api/v1/cases/consular-registration", {}, "registry:act"),
    ("POST", "/api/v1/cases/passport-application", "/api/v1/cases/passport-application", {}, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/handover", "/api/v1/cases/PAS-2026-999999/handover", {}, "registry:act"),
    ("POST", "/api/v1/cases/repatriation", "/api/v1/cases/repatriation", {}, "registry:act"),
    ("POST", "/api/v1/cases/civil-status-extract", "/api/v1/cases/civil-status-extract", {}, "registry:act"),
    ("POST", "/api/v1/cases/transcription", "/api/v1/cases/transcription", {}, "registry:act"),
    ("POST", "/api/v1/cases/life-certificate", "/api/v1/cases/life-certificate", {}, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/outcome", "/api/v1/cases/JUD-2026-999999/outcome", {}, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/cancel", "/api/v1/cases/LIC-2026-999999/cancel", {}, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/retry", "/api/v1/cases/LIC-2026-999999/retry", None, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/reassign", "/api/v1/cases/LIC-2026-999999/reassign", {}, "registry:act"),
    ("POST", "/api/v1/cases/{reference}/match", "/api/v1/cases/JUD-2026-999999/match", {}, "registry:act"),
    ("POST", "/api/v1/life-certificates/batches", "/api/v1/life-certificates/batches", None, "operations:run"),
    ("GET", "/api/v1/life-certificates/batches", "/api/v1/life-certificates/batches", None, "messages:read"),
    ("GET", "/api/v1/life-certificates/batches/{reference}", "/api/v1/life-certificates/batches/B-1", None,
     "messages:read"),
    ("GET", "/api/v1/messages", "/api/v1/messages", None, "messages:read"),
    ("GET", "/api/v1/messages/{message_id}", "/api/v1/messages/NOPE-1", None, "messages:read"),
    ("GET", "/api/v1/messages/{message_id}/payload", "/api/v1/messages/NOPE-1/payload", None, "messages:payload"),
    ("POST", "/api/v1/messages/{message_id}/resend", "/api/v1/messages/NOPE-1/resend", None, "messages:resend"),
    ("POST", "/api/v1/partners/{partner}/poll", "/api/v1/partners/NOBODY/poll", None, "operations:run"),
    ("POST", "/api/v1/messages", "/api/v1/messages", None, "messages:submit"),
    ("POST", "/api/v1/partners/{partner}/messages", "/api/v1/partners/NARSA/messages", None,
     "partner-documents:submit"),
    ("GET", "/api/v1/partner/messages", "/api/v1/partner/messages", None, "partner-messages:read"),
    ("GET", "/api/v1/partner/messages/{message_id}", "/api/v1/partner/messages/NOPE-1", None,
     "partner-messages:read"),
    ("GET", "/api/v1/partner/refusals", "/api/v1/partner/refusals", None, "partner-messages:read"),
    ("GET", "/api/v1/monitor/dead-letters", "/api/v1/monitor/dead-letters", None, "messages:read"),
    ("POST", "/api/v1/monitor/dead-letters/resend", "/api/v1/monitor/dead-letters/resend", {}, "messages:resend"),
    ("GET", "/api/v1/monitor/refusals", "/api/v1/monitor/refusals", None, "refusals:read"),
    ("GET", "/api/v1/monitor/audit", "/api/v1/monitor/audit", None, "audit:read"),
    ("GET", "/api/v1/monitor/alerts", "/api/v1/monitor/alerts", None, "alerts:read"),
    ("GET", "/api/v1/monitor/overview", "/api/v1/monitor/overview", None, "console:overview"),
    ("GET", "/api/v1/citizens/{registration_id}/certificate.pdf", "/api/v1/citizens/MRE-9999999/certificate.pdf", None,
     "registry:act"),
    ("GET", "/api/v1/cases/{reference}/document.pdf", "/api/v1/cases/LIC-2026-999999/document.pdf", None,
     "registry:act"),
    ("POST", "/api/v1/documents/{code}/revoke", "/api/v1/documents/AAAAA-AAAAA-AAAAA-AAAAA/revoke", {}, "registry:act"),
]
# Routes under /api that answer anyone, by design (an app's public_paths(), hub/apps.py): what they reveal is
# their own module's subject (the verification of a printed document: tests/test_documents.py).
PUBLIC_ROUTES = [
    ("GET", "/api/v1/verify/{code}", "/api/v1/verify/AAAAA-AAAAA-AAAAA-AAAAA"),
]


def _call(http, method: str, path: str, body):
    if body is None and method == "POST":
        return http.post(path, content=b"<not-xml", headers=XML)
    return http.request(method, path, json=body) if body is not None else http.request(method, path)


@pytest.fixture
def clients(client_as):
    """One client per role: the agent of FR-PARIS, the partner NARSA."""
    return {role: client_as(role, post=AGENT_POST if role == "consular_agent" else None,
                            partner="NARSA" if role == "partner" else None) for role in ROLES}


def test_the_permission_table_is_the_issues(running_hub):
    assert {p: set(roles) for p, (roles, _) in PERMISSIONS.items() if p != "tokens:manage"} == EXPECTED
    assert PERMISSIONS["tokens:manage"][0] == ("administrator",)


def test_every_api_route_is_covered_and_needs_a_token(client, anonymous):
    documented = {(method.upper(), path) for path, ops in client.get("/openapi.json").json()["paths"].items()
                  if path.startswith("/api/") for method in ops}
    covered = {(method, template) for method, template, *_ in ROUTES + PUBLIC_ROUTES}
    assert documented == covered, f"not covered: {documented - covered}; gone: {covered - documented}"
    for method, _, path in PUBLIC_ROUTES:
        assert anonymous.request(method, path).status_code != 401, path
    for method, _, path, body, _ in ROUTES:
        response = _call(anonymous, method, path, body)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
    assert anonymous.get("/api/v1/no-such-route").status_code == 401  # not even whether a path exists
    assert anonymous.get("/healthz").status_code == 200  # outside /api: no token


def test_each_role_is_allowed_exactly_its_permissions(clients):
    for method, _, path, body, permission in ROUTES:
        for role, http in clients.items():
            response = _call(http, method, path, body)
            assert response.status_code != 401, (role, method, path, response.text)
            if role in EXPECTED[permission]:
                assert response.status_code != 403, (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.status_code, response.text)
                assert response.json()["title"] == "Forbidden" and role in response.json()["detail"]


@pytest.fixture
def two_posts(client):
    """A citizen registered at the agent's post and one at another post, each with a licence case."""
    ours = register_citizen(client, post_code=AGENT_POST, cnie="BK123456", phone="+33612345678",
                            email="youssef@example.fr", passport_number="AB1234567")
    theirs = register_citizen(client, post_code=OTHER_POST, cnie="J765432", given_name_latin="Salma",
                              family_name_latin="Tazi", country="ES", city="Madrid")
    cases = {}
    for name, citizen in (("ours", ours), ("theirs", theirs)):
        response = client.post("/api/v1/cases/licence-authentication",
                               json={"registration_id": citizen["registration_id"], "licence": LICENCE})
        assert response.status_code == 201, response.text
        cases[name] = response.json()["reference"]
    return ours, theirs, cases


@pytest.mark.private_hub  # lists every case of its post
def test_a_consular_agent_sees_and_changes_only_their_posts_citizens_and_cases(running_hub, client, client_as,
                                                                                  two_posts):
    ours, theirs, cases = two_posts
    agent = client_as("consular_agent", post=AGENT_POST)
    # reads
    assert agent.get(f"/api/v1/citizens/{ours['registration_id']}").json()["cnie"] == "BK123456"
    assert agent.get(f"/api/v1/cases/{cases['ours']}").status_code == 200
    for path in (f"/api/v1/citizens/{theirs['registration_id']}", f"/api/v1/cases/{cases['theirs']}"):
        refused = agent.get(path)
        assert refused.status_code == 403 and AGENT_POST in refused.json()["detail"], refused.text
    listed = agent.get("/api/v1/cases").json()
    assert [c["reference"] for c in listed] == [cases["ours"]]
    assert agent.get("/api/v1/cases", params={"post_code": OTHER_POST}).status_code == 403
    assert agent.get("/api/v1/cases", params={"post_code": AGENT_POST}).json() == listed
    # actions on the other post's citizen or case: refused, and nothing opened
    before = len(client.get("/api/v1/cases").json())
    refused = {
        "register at the other post": agent.post("/api/v1/citizens", json={
            "post_code": OTHER_POST, "given_name_latin": "A", "family_name_latin": "B", "given_name_arabic": "أ",
            "family_name_arabic": "ب", "birth_date": "1990-01-01", "sex": "F", "country": "ES", "city": "Madrid",
            "address_lines": "1 calle Mayor"}),
        "correct their citizen": agent.post(f"/api/v1/citizens/{theirs['registration_id']}/corrections",
                                            json={"phone": "+34600000000"}),
        "record their citizen's death": agent.post(f"/api/v1/citizens/{theirs['registration_id']}/death",
                                                   json={"died_on": "2026-11-01", "reason": "certificate"}),
        "take their citizen": agent.post(f"/api/v1/citizens/{theirs['registration_id']}/transfer",
                                         json={"post_code": AGENT_POST, "reason": "moved"}),
        "read their citizen's history": agent.get(f"/api/v1/citizens/{theirs['registration_id']}/history"),
        "open a case for their citizen": agent.post("/api/v1/cases/licence-authentication", json={
            "registration_id": theirs["registration_id"], "licence": LICENCE}),
        "renew their registration": agent.post("/api/v1/cases/consular-registration", json={
            "kind": "RENEWAL", "registration_id": theirs["registration_id"]}),
        "a NEW registration at their post": agent.post("/api/v1/cases/consular-registration", json={
            "kind": "NEW", "post_code": OTHER_POST, "person": {
                "given_name_latin": "A", "family_name_latin": "B", "given_name_arabic": "أ", "family_name_arabic": "ب",
                "birth_date": "1990-01-01", "sex": "F"},
            "address": {"country": "ES", "city": "Madrid", "lines": ["1 calle Mayor"]}}),
        "a life certificate for their citizen": agent.post("/api/v1/cases/life-certificate", json={
            "registration_id": theirs["registration_id"], "pension_number": "20230417", "fund": "CNRA"}),
        "a repatriation at their post": agent.post("/api/v1/cases/repatriation", json={
            "deceased": {"given_name_latin": "A", "family_name_latin": "B", "given_name_arabic": "أ",
                         "family_name_arabic": "ب", "birth_date": "1940-01-01", "sex": "M"},
            "post_code": OTHER_POST, "death": {"date": "2026-11-18", "country": "ES", "city": "Madrid",
                                               "cause_code": "I21.9", "cause_text": "x"},
            "burial": {"commune": "1411011", "commune_name": "Agadir"},
            "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "RAM",
                          "seal_number": "S-1"}}),
        "hand over at their post": agent.post(f"/api/v1/cases/{cases['theirs']}/handover", json={}),
        "record an outcome at their post": agent.post(f"/api/v1/cases/{cases['theirs']}/outcome",
                                                      json={"outcome": "SERVED"}),
    }
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.status_code, response.text)
    assert len(client.get("/api/v1/cases").json()) == before  # nothing was opened by the refused requests
    assert client.get(f"/api/v1/citizens/{theirs['registration_id']}").json() == theirs  # nor changed
    # and their own post works
    opened = agent.post("/api/v1/cases/licence-authentication",
                        json={"registration_id": ours["registration_id"], "licence": LICENCE})
    assert opened.status_code == 201, opened.text
    assert opened.json()["post_code"] == AGENT_POST
    assert opened.json()["history"][0]["actor"].startswith("consular_agent ")
    assert agent.post(f"/api/v1/cases/{cases['ours']}/handover", json={}).status_code == 409  # allowed, not ready


@pytest.mark.private_hub  # lists every case
def test_supervisor_reads_every_post_but_acts_on_none(client_as, two_posts):
    ours, theirs, cases = two_posts
    supervisor = client_as("supervisor")
    assert supervisor.get(f"/api/v1/cases/{cases['theirs']}").status_code == 200
    assert supervisor.get(f"/api/v1/citizens/{theirs['registration_id']}").status_code == 200
    assert {c["reference"] for c in supervisor.get("/api/v1/cases").json()} == set(cases.values())
    assert supervisor.post("/api/v1/cases/licence-authentication", json={
        "registration_id": ours["registration_id"], "licence": LICENCE}).status_code == 403


def test_lists_are_masked_and_single_records_whole(client, client_as, two_posts):
    ours, _, cases = two_posts
    agent = client_as("consular_agent", post=AGENT_POST)
    response = agent.post("/api/v1/cases/repatriation", json={
        "registration_id": ours["registration_id"],
        "death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": "I21.9",
                  "cause_text": "Infarctus du myocarde"},
        "burial": {"commune": "1411011", "commune_name": "Agadir"},
        "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "RAM", "seal_number": "S-1"}})
    assert response.status_code == 201, response.text
    reference = response.json()["reference"]
    assert response.json()["details"]["death"]["cause_text"] == "Infarctus du myocarde"  # the agent who wrote it
    for role, http in (("administrator", client), ("consular_agent", agent), ("supervisor", client_as("supervisor"))):
        [listed] = [c for c in http.get("/api/v1/cases").json() if c["reference"] == reference]
        deceased = listed["details"]["deceased"]
        assert deceased["cnie"] == "******56" and deceased["birth_date"] == "1988-**-**", (role, deceased)
        assert deceased["given_name_latin"] == "Y." and deceased["family_name_latin"] == "El Amrani"
        assert "Infarctus" not in str(listed) and "I21.9" not in str(listed), role
        full = http.get(f"/api/v1/cases/{reference}").json()
        assert full["details"]["deceased"]["cnie"] == "BK123456"
        assert full["details"]["deceased"]["birth_date"] == "1988-04-12"
        cause = full["details"]["death"]["cause_text"]
        assert cause == ("[withheld]" if role == "supervisor" else "Infarctus du myocarde"), role
    citizen = agent.get(f"/api/v1/citizens/{ours['registration_id']}").json()
    assert (citizen["phone"], citizen["email"], citizen["passport_number"]) == (
        "+33612345678", "youssef@example.fr", "AB1234567")


@pytest.mark.private_hub  # counts every view audited
def test_payloads_are_for_integration_and_administrators_and_each_view_is_audited(running_hub, client, client_as,
                                                                                   pki_dir):
    data = licence_request(pki_dir, reference="LIC-2026-000777")
    assert client.post("/api/v1/messages", content=data, headers=XML).status_code == 202
    path = "/api/v1/messages/REGISTRY-LIC-2026-000777/payload"
    integration = client_as("integration")
    response = integration.get(path)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["cache-control"] == "no-store"
    assert client.get(path).content == data
    for role in ("supervisor", "consular_agent", "partner"):
        http = client_as(role, post=AGENT_POST if role == "consular_agent" else None,
                         partner="NARSA" if role == "partner" else None)
        assert http.get(path).status_code == 403, role
    assert client.get(path, params={"part": "sent", "partner": "DGSN"}).status_code == 404
    with running_hub.hub.sessions() as session:
        views = session.scalars(select(AuditEntry).where(AuditEntry.action == "PAYLOAD_VIEWED")
                                .order_by(AuditEntry.id)).all()
    token_id = integration.token.split("_")[1]
    assert len(views) == 2  # the two views served; refusals show nothing, so record nothing
    assert views[0].subject == "REGISTRY-LIC-2026-000777" and token_id in views[0].actor
    assert "integration" in views[0].actor and views[0].detail.startswith("received")
    assert integration.token not in views[0].actor and integration.token.split("_", 2)[2] not in str(
        [(v.actor, v.detail) for v in views])


def test_resend_is_for_integration_supervisors_and_administrators(client, client_as, pki_dir):
    data = licence_request(pki_dir, reference="LIC-2026-000778")
    assert client.post("/api/v1/messages", content=data, headers=XML).status_code == 202
    path = "/api/v1/messages/REGISTRY-LIC-2026-000778/resend"
    for role in ("integration", "supervisor", "administrator"):
        response = client_as(role).post(path)
        assert response.status_code == 200 and response.json()["resent"] == 0, (role, response.text)
    assert client_as("consular_agent", post=AGENT_POST).post(path).status_code == 403
    assert client.post("/api/v1/messages/NOPE/resend").status_code == 404


@pytest.mark.private_hub  # counts every message
def test_a_partner_token_speaks_only_for_its_partner(running_hub, client_as, pki_dir):
    narsa = client_as("partner", partner="NARSA")
    # a canonical message whose header names another sender: refused before intake, recorded
    registry_message = licence_request(pki_dir, reference="LIC-2026-000779")
    refused = narsa.post("/api/v1/messages", content=registry_message, headers=XML)
    assert refused.status_code == 403 and "the caller speaks for NARSA" in refused.json()["detail"], refused.text
    with running_hub.hub.sessions() as session:
        refusal = session.scalars(select(Refusal).order_by(Refusal.id.desc())).first()
    assert refusal.status == 403 and refusal.partner == "NARSA" and "Sender REGISTRY" in refusal.reason
    # with its own code as Sender, the message goes on to intake (which verifies the signature itself)
    as_narsa = replace_text(registry_message, "<env:Sender>REGISTRY</env:Sender>", "<env:Sender>NARSA</env:Sender>")
    answered = narsa.post("/api/v1/messages", content=as_narsa, headers=XML)
    assert answered.status_code in (400, 403) and "belongs to partner" not in answered.text, answered.text
    # another partner's door
    other = narsa.post("/api/v1/partners/ETAT_CIVIL/messages", content=b"<x/>", headers=XML)
    assert other.status_code == 403 and "not ETAT_CIVIL" in other.json()["detail"]
    assert narsa.post("/api/v1/partners/narsa/messages", content=b"<x/>", headers=XML).status_code == 400
    assert client_as("administrator").get("/api/v1/messages").json()["total"] == 0

"""Administrators keep the consular posts over the API (registry/post_views.py, registry/posts.py): create one,
close one once no citizen is left there; each audited, each refusal changing nothing. The module's tests share
one hub and each uses posts of its own."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from hub.store.models import AuditEntry
from registry.models import Citizen
from support import register_citizen

pytestmark = pytest.mark.shared_hub

NICE = {"code": "FR-NICE", "name": "Consulat du Royaume du Maroc à Nice", "kind": "CONSULATE", "country": "FR",
        "city": "Nice", "jurisdiction": "Alpes-Maritimes et Var", "languages": ["ar", "fr"],
        "time_zone": "Europe/Paris"}


def audit_entries(hub, subject: str) -> list[tuple[str, str, str]]:
    with hub.sessions() as session:
        return [(e.action, e.actor, e.detail) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.id))]


def test_an_administrator_creates_a_post_and_a_wrong_one_is_refused_naming_the_field(running_hub, client,
                                                                                      client_as):
    refused = [
        ("body.time_zone", {**NICE, "time_zone": "Europe/Nice"}),
        ("body.languages", {**NICE, "languages": ["ar", "FR"]}),
        ("body.languages", {**NICE, "languages": []}),
        ("body.code", {**NICE, "code": "nice"}),
        ("body.kind", {**NICE, "kind": "EMBASSY"}),
    ]
    for field, body in refused:
        response = client.post("/api/v1/posts", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in {error["path"] for error in response.json()["errors"]}, (field, response.json())
    hostile = client.post("/api/v1/posts", json={**NICE, "name": "Consulat\u202e de Nice"})
    assert hostile.status_code == 400 and hostile.json()["errors"][0]["path"] == "field body.name", hostile.text
    assert client.get("/api/v1/posts/FR-NICE").status_code == 404  # nothing was made by the refusals

    created = client.post("/api/v1/posts", json=NICE)
    assert created.status_code == 201, created.text
    assert created.json() == {**NICE, "active": True, "closed_at": None, "closed_reason": None}
    assert client.get("/api/v1/posts/FR-NICE").json() == created.json()
    assert "FR-NICE" in {p["code"] for p in client.get("/api/v1/posts", params={"country": "FR"}).json()}
    [(action, actor, detail)] = audit_entries(running_hub.hub, "FR-NICE")
    assert action == "POST_CREATED" and "administrator" in actor and detail == "CONSULATE at Nice (FR)"

    again = client.post("/api/v1/posts", json={**NICE, "name": "Another"})
    assert again.status_code == 409 and "already an open post's" in again.json()["detail"], again.text
    assert client.get("/api/v1/posts/FR-NICE").json()["name"] == NICE["name"]
    # a consular agent reads posts but keeps none
    agent = client_as("consular_agent", post="FR-PARIS")
    assert agent.post("/api/v1/posts", json={**NICE, "code": "FR-NICE2"}).status_code == 403
    assert agent.get("/api/v1/posts/FR-NICE").status_code == 200


@pytest.mark.both_databases  # the count of citizens served and the row lock, on PostgreSQL too
def test_a_post_closes_only_once_no_citizen_is_left_and_then_takes_no_one_new(running_hub, client):
    hub = running_hub.hub
    post = {**NICE, "code": "FR-TOULON", "city": "Toulon", "name": "Consulat du Royaume du Maroc à Toulon"}
    assert client.post("/api/v1/posts", json=post).status_code == 201
    citizens = [register_citizen(client, post_code="FR-TOULON", cnie=f"TL{n:06d}")["registration_id"]
                for n in range(2)]

    refused = client.post("/api/v1/posts/FR-TOULON/close", json={"reason": "merged into Marseille"})
    assert refused.status_code == 409 and "2 citizens are still registered" in refused.json()["detail"], refused.text
    assert client.get("/api/v1/posts/FR-TOULON").json()["active"] is True  # nothing changed
    def transfer(registration_id: str) -> None:
        moved = client.post(f"/api/v1/citizens/{registration_id}/transfer",
                            json={"post_code": "FR-MARSEI", "reason": "moved to Marseille"})
        assert moved.status_code == 200, moved.text

    transfer(citizens[0])
    refused = client.post("/api/v1/posts/FR-TOULON/close", json={"reason": "merged into Marseille"})
    assert refused.status_code == 409 and "1 citizen is still registered" in refused.json()["detail"], refused.text
    transfer(citizens[1])

    for reason in ({}, {"reason": ""}, {"reason": "x" * 501}):
        assert client.post("/api/v1/posts/FR-TOULON/close", json=reason).status_code == 422
    closed = client.post("/api/v1/posts/FR-TOULON/close", json={"reason": "merged into Marseille"})
    assert closed.status_code == 200, closed.text
    shown = client.get("/api/v1/posts/FR-TOULON").json()
    assert (shown["active"], shown["closed_reason"]) == (False, "merged into Marseille") and shown["closed_at"]
    assert [a for a, _, _ in audit_entries(hub, "FR-TOULON")] == ["POST_CREATED", "POST_CLOSED"]
    assert audit_entries(hub, "FR-TOULON")[1][2] == "merged into Marseille"
    closed = {p["code"] for p in client.get("/api/v1/posts", params={"active": "false"}).json()}
    assert "FR-TOULON" in closed and "FR-PARIS" not in closed
    assert "FR-TOULON" not in {p["code"] for p in client.get("/api/v1/posts", params={"active": "true"}).json()}

    again = client.post("/api/v1/posts/FR-TOULON/close", json={"reason": "twice"})
    assert again.status_code == 409 and "was closed on" in again.json()["detail"]
    assert client.get("/api/v1/posts/FR-TOULON").json()["closed_reason"] == "merged into Marseille"
    newcomer = client.post("/api/v1/citizens", json={
        "post_code": "FR-TOULON", "country": "FR", "city": "Toulon", "given_name_latin": "Ali",
        "family_name_latin": "Amrani", "given_name_arabic": "علي", "family_name_arabic": "العمراني",
        "birth_date": "1980-01-02", "sex": "M", "address_lines": "1 quai de la Sinse"})
    assert newcomer.status_code == 400 and "post FR-TOULON is closed" in newcomer.json()["detail"], newcomer.text
    assert client.post("/api/v1/posts", json=post).status_code == 409  # a closed post's code is never reused
    assert client.post("/api/v1/posts/FR-NOWHERE/close", json={"reason": "x"}).status_code == 404
    assert [a for a, _, _ in audit_entries(hub, "FR-TOULON")] == ["POST_CREATED", "POST_CLOSED"]


def test_a_consular_agent_is_bound_to_a_post_an_administrator_created_and_never_to_a_closed_one(
        running_hub, client, monkeypatch, capsys):
    from hub.cli.main import main as hub_cli
    settings = running_hub.hub.settings
    for name, value in {"HUB_DATABASE_URL": settings.database_url, "HUB_CONFIG_DIR": str(settings.config_dir),
                        "HUB_PKI_DIR": str(settings.pki_dir), "HUB_VAR_DIR": str(settings.var_dir)}.items():
        monkeypatch.setenv(name, value)
    cannes = {**NICE, "code": "FR-CANNES", "city": "Cannes", "name": "Consulat du Royaume du Maroc à Cannes"}
    assert client.post("/api/v1/posts", json=cannes).status_code == 201  # not in the reference file

    def agent_token(post: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = hub_cli(["tokens", "create", "--role", "consular_agent", "--name", f"desk {post}", "--post", post])
        out, err = capsys.readouterr()
        return code, out, err
    code, out, err = agent_token("FR-CANNES")
    assert code == 0 and out.startswith("hub_"), err
    assert client.post("/api/v1/posts/FR-CANNES/close", json={"reason": "opened by mistake"}).status_code == 200
    code, out, err = agent_token("FR-CANNES")
    assert code == 2 and "no consular post with code 'FR-CANNES' is open" in err and out == ""
    assert agent_token("FR-PARIS")[0] == 0  # the file's posts as before


# -- the console's page: the same keeping, through forms -----------------------------------------------------

from console_support import PASSWORD, ConsoleClient, make_user  # noqa: E402


@pytest.mark.both_databases  # a NUL typed into a form must not reach PostgreSQL
def test_the_console_lists_the_posts_and_an_administrator_keeps_them_there(running_hub, client):
    hub = running_hub.hub
    admin, _ = make_user(hub.sessions, "administrator")
    agent, _ = make_user(hub.sessions, "consular_agent", post="FR-PARIS")
    huelva = {"code": "es-huelva", "name": "Consulado de Marruecos en Huelva", "kind": "CONSULATE", "country": "es",
              "city": "Huelva", "jurisdiction": "Provincia de Huelva", "languages": "ar, es fr", "time_zone": "UTC"}
    with ConsoleClient(running_hub.url, admin) as console:
        page = console.get("/monitor/posts")
        assert page.status_code == 200 and 'data-code="FR-PARIS"' in page.text and 'action="/monitor/posts"' in page.text
        wrong = console.post_form("/monitor/posts", {**huelva, "time_zone": "Europe/Huelva", "languages": "ar, xyz"})
        assert wrong.status_code == 422 and "languages, time_zone" in wrong.text
        assert 'value="Consulado de Marruecos en Huelva"' in wrong.text  # what was typed is kept for the retry
        nul = console.post_form("/monitor/posts", {**huelva, "name": "Consulado\x00", "time_zone": "Europe/Madrid"})
        assert nul.status_code == 422 and "vérifiez name." in nul.text  # the page is in French
        created = console.post_form("/monitor/posts", {**huelva, "time_zone": "Europe/Madrid"})
        assert created.status_code == 303 and created.headers["location"] == "/monitor/posts?created=ES-HUELVA"
        shown = client.get("/api/v1/posts/ES-HUELVA").json()
        assert (shown["country"], shown["languages"], shown["active"]) == ("ES", ["ar", "es", "fr"], True)
        again = console.post_form("/monitor/posts", {**huelva, "time_zone": "Europe/Madrid"})
        assert again.status_code == 409 and "already an open post" in again.text

        register_citizen(client, post_code="ES-HUELVA", cnie="HU000001", country="ES", city="Huelva")
        busy = console.post_form("/monitor/posts/close", {"code": "ES-HUELVA", "reason": "merged into Sevilla"})
        assert busy.status_code == 409 and "1 citizen is still registered" in busy.text
        assert console.post_form("/monitor/posts/close", {"code": "ES-HUELVA", "reason": ""}).status_code == 422
        assert console.post_form("/monitor/posts/close", {"code": "ES-\x00HUELVA", "reason": "x"}).status_code == 404
        assert "ES-NOWHERE" not in console.get("/monitor/posts", params={"created": "ES-NOWHERE"}).text
        with hub.sessions.begin() as session:  # the citizen moves to Sevilla (the transfer is not this test's)
            session.execute(update(Citizen).where(Citizen.post_code == "ES-HUELVA").values(post_code="ES-SEVILLA"))
        closed = console.post_form("/monitor/posts/close", {"code": "ES-HUELVA", "reason": "merged into Sevilla"})
        assert closed.status_code == 303 and closed.headers["location"] == "/monitor/posts?closed=ES-HUELVA"
        assert client.get("/api/v1/posts/ES-HUELVA").json()["closed_reason"] == "merged into Sevilla"
        assert '<option value="ES-HUELVA">' not in console.get("/monitor/posts").text  # no longer to close
    entries = audit_entries(hub, "ES-HUELVA")
    assert [a for a, _, _ in entries] == ["POST_CREATED", "POST_CLOSED"]
    assert all(actor.startswith(f"user {admin} ") for _, actor, _ in entries)

    with ConsoleClient(running_hub.url, agent) as console:  # reads the posts, keeps none
        page = console.get("/monitor/posts")
        assert page.status_code == 200 and 'data-code="ES-HUELVA"' in page.text and "csrf_token" not in \
            page.text.split("<main", 1)[1]
        assert console.post_form("/monitor/posts/close", {"code": "ES-SEVILLA", "reason": "x"}).status_code == 403
    assert client.get("/api/v1/posts/ES-SEVILLA").json()["active"] is True


def test_the_posts_page_reads_well_in_french_and_arabic(running_hub, browser_context):
    from browser_support import LAPTOP, TABLET, screenshot
    username, _ = make_user(running_hub.hub.sessions, "administrator")
    for locale, lang, title in (("fr-FR", "fr", "Postes consulaires"), ("ar", "ar", "المراكز القنصلية")):
        context = browser_context.another(locale=locale)
        page = context.new_page()
        context.problems.watch(page)
        page.goto(f"{running_hub.url}/monitor/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.press("#password", "Enter")
        page.goto(f"{running_hub.url}/monitor/posts")
        assert page.inner_text("main h1").strip() == title
        assert page.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
        assert page.locator("table.posts tbody tr").count() >= 135
        for screen in (TABLET, LAPTOP):
            page.set_viewport_size(screen)
            assert page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")\
                <= 0, (lang, screen)
        screenshot(page, f"posts-{lang}")

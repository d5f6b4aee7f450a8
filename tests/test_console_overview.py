"""The overview page (/monitor/), its live fragment and GET /api/v1/monitor/overview, against a running hub
and the NARSA sandbox: the page shows the API's figures, each role sees what it may."""
from __future__ import annotations

import httpx
import pytest
from lxml import html

from conftest import bearer, wait_for
from console_support import ConsoleClient, make_user
from test_licence_flow import open_case, wait_final

pytestmark = pytest.mark.shared_hub


def _api(running_hub, role: str, **scope) -> httpx.Client:
    return httpx.Client(base_url=running_hub.url, timeout=30, headers=bearer(running_hub.mint_token(role, **scope)))


def page_figures(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """{partner: {figure: value}} as the page's tiles carry them, and the hub's status."""
    tree = html.fromstring(text)
    tiles = {}
    for tile in tree.xpath("//article[@data-partner]"):
        tiles[tile.get("data-partner")] = {e.get("data-fig"): e.get("value", e.get("data-value"))
                                           for e in tile.xpath(".//*[@data-fig]")}
    [hub_status] = tree.xpath("//*[@data-fig='hub.status']/@data-value")
    return tiles, hub_status


def api_figures(partner: dict) -> dict[str, str]:
    """The same figures from the API's JSON, written as the page writes them."""
    found = {"status": partner["status"], "circuit": partner["circuit"], "outbox": str(partner["outbox"]),
             "dead_letters": str(partner["dead_letters"]),
             "reachable": "none" if partner["reachable"] is None else str(partner["reachable"]).lower()}
    for direction in ("messages_in", "messages_out"):
        for window, count in partner[direction].items():
            found[f"{direction}.{window}"] = str(count)
    if partner["certificate_days_left"] is not None:
        found["certificate_days_left"] = str(partner["certificate_days_left"])
    return found


def test_the_page_shows_the_apis_figures_after_traffic_and_a_dead_letter(running_hub, sandbox_factory, client):
    sandbox = sandbox_factory(running_hub.url)
    delivered = open_case(client, "12/345673")
    assert wait_final(client, delivered)["status"] == "AUTHENTIC"  # answered before NARSA is made to fail
    sandbox.behave(mode="fail", status=422)          # NARSA refuses the next one: a dead letter
    refused = open_case(client, "12/345671")
    assert wait_final(client, refused)["status"] == "FAILED"
    sandbox.behave(mode="normal")

    username, password = make_user(running_hub.hub.sessions, "supervisor")
    with ConsoleClient(running_hub.url, username, password) as console, _api(running_hub, "supervisor") as api:
        # the first asks start the partners' checks: wait until every partner's is known
        wait_for(lambda: all(p["reachable"] is not None for p in api.get("/api/v1/monitor/overview").json()["partners"]),
                 what="every partner's reachability")
        # the page and the API are read a moment apart, and a partner's check may end between the two: the
        # same figures must show once nothing moves (a check's result is kept 10 s)
        seen = {}

        def same_figures() -> bool:
            seen["page"], seen["answer"] = console.get("/monitor/"), api.get("/api/v1/monitor/overview")
            tiles, hub_status = page_figures(seen["page"].text)
            partners = seen["answer"].json()["partners"]
            return (set(tiles) == {p["code"] for p in partners}
                    and all(tiles[p["code"]] == api_figures(p) for p in partners)
                    and hub_status == seen["answer"].json()["hub"]["status"])
        wait_for(same_figures, timeout=20, interval=1, what="the page's figures equal to the API's")
    page, answer = seen["page"], seen["answer"]
    assert page.status_code == 200 and answer.status_code == 200
    data = answer.json()
    assert {p["code"] for p in data["partners"]} == {"DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"}

    narsa = next(p for p in data["partners"] if p["code"] == "NARSA")
    assert narsa["reachable"] is True and narsa["circuit"] == "closed"
    assert narsa["messages_out"]["15m"] >= 2 and narsa["messages_in"]["15m"] >= 1    # requests out, a verdict in
    assert narsa["dead_letters"] >= 1 and narsa["status"] == "amber" and "dead letters waiting" in narsa["reasons"]
    assert "422" in narsa["last_failure"]["reason"] and narsa["last_failure"]["state"] == "DEAD"
    assert narsa["last_success_at"] and narsa["latency_p95_seconds"] is not None
    assert sum(data["series"]["messages_out"]["NARSA"]) == narsa["messages_out"]["24h"]
    dgsn = next(p for p in data["partners"] if p["code"] == "DGSN")
    assert dgsn["reachable"] is False and dgsn["status"] == "red"          # no DGSN sandbox runs
    assert data["hub"]["database_ok"] and data["hub"]["this_process_leads"] is True
    # the reason is shown in words on the page, translated (French by default), and the failure's text with it
    narsa_tile = html.fromstring(page.text).xpath("//article[@data-partner='NARSA']")[0].text_content()
    assert "lettres mortes en attente" in narsa_tile and "422" in narsa_tile
    assert "<svg" in page.text and 'role="img"' in page.text


def test_a_consular_agent_sees_no_partner_and_a_partner_token_no_overview(running_hub, anonymous):
    username, password = make_user(running_hub.hub.sessions, "consular_agent", post="FR-PARIS")
    with ConsoleClient(running_hub.url, username, password) as console:
        page = console.get("/monitor/")
        live = console.get("/monitor/overview/live")
    assert page.status_code == 200 and live.status_code == 200
    for text in (page.text, live.text):
        assert "data-partner" not in text and "<svg" not in text and "data-fig=\"hub.status\"" in text
    with _api(running_hub, "consular_agent", post="FR-PARIS") as agent:
        data = agent.get("/api/v1/monitor/overview").json()
    assert data["partners"] is None and data["series"] is None and data["hub"]["database_ok"] is True
    with _api(running_hub, "partner", partner="NARSA") as partner:
        assert partner.get("/api/v1/monitor/overview").status_code == 403
    assert anonymous.get("/api/v1/monitor/overview").status_code == 401
    signed_out = anonymous.get("/monitor/overview/live", follow_redirects=False)
    assert signed_out.status_code == 303 and "/monitor/login" in signed_out.headers["location"]


def test_the_live_fragment_and_the_arabic_page(running_hub, anonymous):
    username, password = make_user(running_hub.hub.sessions, "integration")
    with ConsoleClient(running_hub.url, username, password) as console:
        live = console.get("/monitor/overview/live")
        console.cookies.set("hub_lang", "ar")
        arabic = console.get("/monitor/")
    assert live.status_code == 200 and "<html" not in live.text and live.text.count("data-partner=") == 6
    page = html.fromstring(arabic.text)
    assert page.get("dir") == "rtl" and page.get("lang") == "ar"
    assert page.xpath("//*[local-name()='svg']/@direction") == ["rtl"]
    assert "الشركاء" in arabic.text                       # "Partners"
    spec = anonymous.get("/openapi.json").json()
    assert "/api/v1/monitor/overview" in spec["paths"]

"""The mapping editor in a real browser (headless Chromium, tests/browser_support.py): the stylesheet is
highlighted by the console's own script under the strict Content Security Policy (a refused script or style
fails the test), the preview follows the typing, and the pages read in French and in Arabic (right to left, the
code kept left to right) on a tablet and a laptop. Screenshots go to var/screenshots/mappings-*.png."""
from __future__ import annotations

import httpx
import pytest

from browser_support import LAPTOP, TABLET, screenshot
from console_support import make_user, sign_in
from support import licence_request

pytestmark = pytest.mark.shared_hub

NARSA = "narsa/licence-request.to-narsa.xsl"


@pytest.fixture(scope="module")
def session_cookie():
    made = {}

    def get(service) -> str:
        if service.url not in made:  # one hub per database (HUB_TEST_DATABASES=both)
            username, password = make_user(service.hub.sessions, "integration")
            with httpx.Client(base_url=service.url) as client:
                assert sign_in(client, username, password).status_code == 303
                made[service.url] = client.cookies["hub_session"]
        return made[service.url]
    return get


def page_as_integration(browser_context, service, cookie: str, locale: str):
    context = browser_context.another(locale=locale)
    host = service.url.split("//")[1].split(":")[0]
    context.add_cookies([{"name": "hub_session", "value": cookie, "domain": host, "path": "/", "httpOnly": True,
                          "sameSite": "Strict"}])
    page = context.new_page()
    context.problems.watch(page)
    return page


def overflow(page) -> int:
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                         " - document.documentElement.clientWidth")


def test_the_editor_highlights_previews_as_one_types_and_reads_in_french_and_arabic(
        running_hub, client, pki_dir, browser_context, session_cookie):
    answer = client.post("/api/v1/messages", content=licence_request(pki_dir, reference="LIC-2026-000801"),
                         headers={"Content-Type": "application/xml"})
    assert answer.status_code == 202, answer.text
    base, cookie = running_hub.url, session_cookie(running_hub)
    for locale, lang in (("fr-FR", "fr"), ("ar", "ar")):
        page = page_as_integration(browser_context, running_hub, cookie, locale)
        page.goto(f"{base}/monitor/mappings")
        assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
        assert page.locator(f'tr[data-mapping="{NARSA}"]').count() == 1
        screenshot(page, f"mappings-list-{lang}")

        page.goto(f"{base}/monitor/mappings/{NARSA}")
        page.wait_for_selector("pre.highlighted .hl-xsl")
        screenshot(page, f"mappings-mapping-{lang}")

        page.goto(f"{base}/monitor/mappings/{NARSA}/edit?message=REGISTRY-LIC-2026-000801")
        layer = page.locator(".code-editor .code-layer")
        layer.locator(".hl-xsl").first.wait_for()
        assert layer.locator(".hl-comment").count() >= 1 and layer.locator(".hl-value").count() > 10
        # the highlighted layer is the textarea's text, and both stay left to right in Arabic
        assert layer.inner_text().rstrip("\n") == page.locator("textarea#xslt").input_value().rstrip("\n")
        assert page.evaluate("getComputedStyle(document.querySelector('.code-layer')).direction") == "ltr"

        text = page.locator("textarea#xslt").input_value()
        page.locator("textarea#xslt").fill(text.replace("PaysResidence", "PaysDeResidence"))
        page.wait_for_selector('#preview [data-outcome="invalid"]', timeout=10_000)
        assert "PaysDeResidence" in page.locator("#preview .diff-add").first.inner_text() or \
            page.locator("#preview .diff-add", has_text="PaysDeResidence").count() >= 1
        assert page.locator(".code-layer").inner_text().count("PaysDeResidence") == 2  # repainted as typed
        for screen in (TABLET, LAPTOP):
            page.set_viewport_size(screen)
            assert overflow(page) <= 0, f"the editor ({lang}) is wider than {screen['width']}"
        screenshot(page, f"mappings-editor-{lang}")

        page.goto(f"{base}/monitor/mappings/{NARSA}/replay")
        with page.expect_navigation():
            page.locator('form[action$="/replay"] button[type="submit"]').click()
        page.wait_for_selector("[data-replay-report]")
        screenshot(page, f"mappings-replay-{lang}")

        page.goto(f"{base}/monitor/mappings/{NARSA}/activate?version=1")
        screenshot(page, f"mappings-activate-{lang}")
        page.context.close()

"""The console in a real browser (headless Chromium, tests/browser_support.py) against a running hub: each role
sees and reaches only what its permissions allow, signing out, the lockout, a cross-site form refused, the
languages (Accept-Language and the switch) and the browser's time zone, Arabic right to left and mirrored,
the keyboard, contrast (WCAG AA), live parts refreshing, a tablet and a laptop screen. Every page fails its test on a console error or a failed request (the
Content Security Policy refuses inline scripts and styles: a page using one shows up here).

The pages checked are the console's navigation (NAV and the apps' ConsolePart.nav) read at run time, so a page
added to the navigation is checked for every role, the keyboard, contrast and both screens without a line
here. Screenshots (login, overview in French and Arabic, each page of the navigation) go to var/screenshots/.

Run them alone: `.venv/bin/pytest -p no:xdist tests/test_console_browser.py -q`."""
from __future__ import annotations

import http.server
import re
import threading

import httpx
import pytest
from sqlalchemy import select

from hub.access.accounts import LOCK_AFTER
from hub.access.tokens import CONSULAR_AGENT, HUMAN_ROLES, PERMISSIONS
from hub.monitor.i18n import translations
from hub.monitor.web import NAV
from hub.store.models import AuditEntry
from browser_support import LAPTOP, TABLET, screenshot
from conftest import free_port
from console_support import make_user, sign_in as console_sign_in

pytestmark = pytest.mark.shared_hub

POST = "FR-PARIS"
SUBMIT = 'form[action="/monitor/login"] button[type="submit"]'
SIGN_OUT = 'form[action="/monitor/logout"] button[type="submit"]'


def say(lang: str, msgid: str, **values) -> str:
    """What the console shows for `msgid` in `lang`."""
    text = translations(lang).gettext(msgid)
    return text % values if values else text


def navigation(service) -> list:
    """Every entry of the console's navigation: its own, then the apps' (as hub/monitor/web.py nav_for)."""
    return [*NAV, *(item for part in service.app.state.console_parts for item in part.nav)]


def may(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission][0]


def person(service, role: str) -> tuple[str, str]:
    """A new account of `role` (a consular agent: at FR-PARIS) for a test that changes it (signs out, locks)."""
    return make_user(service.hub.sessions, role, post=POST if role == CONSULAR_AGENT else None)


@pytest.fixture(scope="module")
def accounts():
    """accounts(service, role) -> (username, password): one account per role for the module's tests that do
    not change it (a test that signs out or locks an account makes its own with `person`)."""
    made: dict = {}

    def get(service, role: str) -> tuple[str, str]:
        if (service.url, role) not in made:  # one hub per database (HUB_TEST_DATABASES=both)
            made[service.url, role] = person(service, role)
        return made[service.url, role]
    return get


@pytest.fixture(scope="module")
def signed_in(accounts):
    """signed_in(service, role) -> (username, the cookie of a session of theirs), one per role for the module
    (signing in through the form itself is tested once per role)."""
    made: dict = {}

    def get(service, role: str) -> tuple[str, str]:
        if (service.url, role) not in made:
            username, password = accounts(service, role)
            with httpx.Client(base_url=service.url) as client:
                assert console_sign_in(client, username, password).status_code == 303
                made[service.url, role] = username, client.cookies["hub_session"]
        return made[service.url, role]
    return get


def context_as(browser_context, service, signed_in, role: str, **options):
    """A fresh context (own cookies, language, screen) holding a session of `role`."""
    context = browser_context.another(**options)
    add_session(context, service, signed_in(service, role)[1])
    return context


def add_session(context, service, cookie: str) -> None:
    host = service.url.split("//")[1].split(":")[0]
    context.add_cookies([{"name": "hub_session", "value": cookie, "domain": host, "path": "/", "httpOnly": True,
                          "sameSite": "Strict"}])


def submit_sign_in(page, username: str, password: str):
    """Fill the sign-in form of the page shown and send it; the response of the page that follows."""
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation() as navigated:
        page.click(SUBMIT)
    return navigated.value


def sign_in(page, base: str, username: str, password: str):
    page.goto(f"{base}/monitor/login")
    landed = submit_sign_in(page, username, password)
    assert landed.status == 200 and page.url == f"{base}/monitor/", f"signing in landed on {page.url}"
    return landed


def watched_page(context):
    page = context.new_page()
    context.problems.watch(page)
    return page


def audit_entries(service, action: str, subject: str) -> list[AuditEntry]:
    with service.hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.subject == subject)))


def html_attributes(page) -> dict:
    return page.evaluate("() => ({lang: document.documentElement.lang, dir: document.documentElement.dir, "
                         "direction: getComputedStyle(document.body).direction})")


def session_cookie(context):
    return next((c for c in context.cookies() if c["name"] == "hub_session"), None)


# ---- roles ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", HUMAN_ROLES)
def test_each_role_sees_and_reaches_only_the_pages_its_permissions_allow(running_hub, browser_page, accounts,
                                                                        role):
    base, page = running_hub.url, browser_page
    username, password = accounts(running_hub, role)
    sign_in(page, base, username, password)
    items = navigation(running_hub)
    allowed = [item.path for item in items if may(role, item.permission)]
    assert allowed, f"a {role} has no page at all"
    shown = page.eval_on_selector_all("nav.main-nav a", "links => links.map(a => a.getAttribute('href'))")
    assert shown == allowed, f"a {role}'s navigation"
    who = page.inner_text(".who")
    assert say("fr", role) in who and (POST in who) == (role == CONSULAR_AGENT)
    for item in items:
        answer = page.goto(base + item.path)
        heading = page.inner_text("main h1")
        if may(role, item.permission):
            assert answer.status == 200, f"{role} on {item.path}"
            assert page.get_attribute('nav.main-nav a[aria-current="page"]', "href") == item.path
            assert heading.strip() and heading != say("fr", "Not allowed")
        else:
            assert answer.status == 403 and heading == say("fr", "Not allowed"), f"{role} on {item.path}"


# ---- signing out, lockout, CSRF --------------------------------------------------------------------------

def test_signing_out_ends_the_session_on_the_server_too(running_hub, browser_context):
    base, page = running_hub.url, watched_page(browser_context)
    username, password = person(running_hub, "supervisor")
    sign_in(page, base, username, password)
    cookie = session_cookie(browser_context)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("hub_session") == -1  # out of the page's scripts' reach
    with page.expect_navigation():
        page.click(SIGN_OUT)
    assert page.url == f"{base}/monitor/login" and session_cookie(browser_context) is None
    page.goto(f"{base}/monitor/")
    assert page.url.startswith(f"{base}/monitor/login?next=")
    browser_context.add_cookies([cookie])  # the old cookie again: the session it named is over
    page.goto(f"{base}/monitor/")
    assert page.url.startswith(f"{base}/monitor/login") and page.is_visible("#password")
    assert len(audit_entries(running_hub, "LOGOUT", username)) == 1


def test_repeated_failed_sign_ins_lock_the_account_even_for_the_right_password(running_hub, browser_page):
    base, page = running_hub.url, browser_page
    username, password = person(running_hub, "integration")
    page.goto(f"{base}/monitor/login")
    wrong = say("fr", "The username or password is wrong, or the account is locked or disabled.")
    for attempt in range(LOCK_AFTER):
        answer = submit_sign_in(page, username, f"not the password {attempt}")
        assert answer.status == 401 and wrong in page.inner_text('[role="alert"]')
        assert page.input_value("#username") == username and page.input_value("#password") == ""
    answer = submit_sign_in(page, username, password)  # locked now: the same words, no session
    assert answer.status == 401 and wrong in page.inner_text('[role="alert"]')
    assert session_cookie(page.context) is None
    assert len(audit_entries(running_hub, "ACCOUNT_LOCKED", username)) == 1
    assert len(audit_entries(running_hub, "LOGIN_FAILED", username)) == LOCK_AFTER + 1


class ElsewherePage:
    """A page of another origin (a tiny http.server on another port) with forms posting to the console."""

    def __init__(self, hub_url: str):
        forms = "".join(
            f'<form method="post" action="{hub_url}/monitor/logout">{field}<button id="{name}">{name}</button></form>'
            for name, field in (("forged", '<input type="hidden" name="csrf_token" value="forged-token-value">'),
                                ("bare", "")))
        body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
                f"<title>Win a prize</title></head><body>{forms}</body></html>").encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere(running_hub):
    page = ElsewherePage(running_hub.url)
    yield page
    page.close()


def test_a_form_posted_from_another_origin_or_site_is_refused_and_changes_nothing(running_hub, browser_page,
                                                                                 elsewhere):
    """127.0.0.1 on another port is another origin of the same site: the SameSite=Strict cookie goes along and
    the CSRF check (Origin, token) refuses (403). localhost is another site: the cookie stays home, and the
    post is not signed in (401)."""
    base, page = running_hub.url, browser_page
    username, password = person(running_hub, "supervisor")
    sign_in(page, base, username, password)
    for host, refused_with in (("127.0.0.1", 403), ("localhost", 401)):
        for button in ("forged", "bare"):
            page.goto(f"http://{host}:{elsewhere.port}/")
            with page.expect_navigation() as navigated:
                page.click(f"#{button}")
            assert navigated.value.url == f"{base}/monitor/logout", (host, button)
            assert navigated.value.status == refused_with, (host, button)
            assert page.goto(f"{base}/monitor/").status == 200 and page.is_visible(SIGN_OUT)  # still signed in
    # and a script of the console's own origin without the token (the Origin is right, the token missing)
    page.problems.expect(r"/monitor/logout\b.*\b403\b|\b403\b.*/monitor/logout")  # the refusals asked for
    statuses = page.evaluate("""async () => {
        const send = body => fetch('/monitor/logout', {method: 'POST', body, credentials: 'same-origin'})
                                .then(r => r.status);
        return [await send(new URLSearchParams()), await send(new URLSearchParams({csrf_token: 'x'.repeat(43)}))];
    }""")
    assert statuses == [403, 403]
    assert page.goto(f"{base}/monitor/").status == 200 and page.is_visible(SIGN_OUT)
    assert audit_entries(running_hub, "LOGOUT", username) == []


# ---- languages, right to left ----------------------------------------------------------------------------

def test_the_language_follows_the_browser_until_the_viewer_chooses_one_and_dates_its_zone(running_hub, browser_context, signed_in):
    base = running_hub.url
    for locale, lang in (("ar", "ar"), ("en-GB", "en"), ("de-DE", "fr")):  # German: none of ours, French
        page = watched_page(browser_context.another(locale=locale))  # Accept-Language from the locale
        page.goto(f"{base}/monitor/login")
        assert html_attributes(page)["lang"] == lang, locale
        assert page.inner_text("main h1") == say(lang, "Sign in to the exchange monitor")
    page = watched_page(context_as(browser_context, running_hub, signed_in, "supervisor",  # French browser
                                   timezone_id="Europe/Paris"))
    page.goto(f"{base}/monitor/")  # the page tells the hub the browser's zone, for the pages that follow
    for lang, name in (("ar", "العربية"), ("en", "English"), ("fr", "Français"), ("en", "English")):
        with page.expect_navigation():
            page.click(f'nav.languages a[lang="{lang}"]')
        assert page.url == f"{base}/monitor/" and html_attributes(page)["lang"] == lang
        assert page.inner_text("main h1") == say(lang, "Overview")
        assert page.inner_text("nav.languages [aria-current]") == name
    page.goto(f"{base}/monitor/")  # the choice is remembered over the browser's French
    assert html_attributes(page)["lang"] == "en"
    assert say("en", "Times are shown in %(zone)s.", zone="Europe/Paris") in page.inner_text("footer")


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(selector, "els => els.map(e => { const r = e.getBoundingClientRect(); "
                                               "return {left: r.left, right: r.right}; })")


def test_the_arabic_pages_are_right_to_left_and_mirrored(running_hub, browser_context, signed_in):
    layouts = {}
    for locale in ("ar", "fr-FR"):  # an administrator: the longest navigation
        page = watched_page(context_as(browser_context, running_hub, signed_in, "administrator", locale=locale))
        page.goto(f"{running_hub.url}/monitor/")
        layouts[locale] = (html_attributes(page), boxes(page, ".top .brand, .top .tools"),
                           boxes(page, "nav.main-nav li"), boxes(page, "nav.languages > *"))
    (attrs, (brand, tools), nav, languages), (fr_attrs, (fr_brand, fr_tools), fr_nav, _) = \
        layouts["ar"], layouts["fr-FR"]
    assert attrs == {"lang": "ar", "dir": "rtl", "direction": "rtl"}
    assert fr_attrs == {"lang": "fr", "dir": "ltr", "direction": "ltr"}
    assert brand["left"] > tools["right"] and fr_brand["right"] < fr_tools["left"]  # the header mirrored
    assert languages[0]["left"] > languages[1]["right"]  # read from the right: the first is rightmost
    for first, second in zip(nav, nav[1:]):
        assert first["left"] > second["left"], "the navigation reads from the right"
    for first, second in zip(fr_nav, fr_nav[1:]):
        assert first["left"] < second["left"]


# ---- keyboard, labels, contrast ---------------------------------------------------------------------------

# Every control a Tab may reach, each under a key of its own: what it is, where it leads and what it says,
# numbered among its likes (several "Resend" buttons), so the same control has the same key after a live refresh.
CONTROLS_JS = """() => {
    const key = e => [e.tagName, e.getAttribute('href') || e.getAttribute('name') || e.id || e.type || '',
                      (e.textContent || e.value || '').trim().slice(0, 40)].join('|');
    const controls = () => [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
        .filter(e => !e.disabled && e.type !== 'hidden' && e.tabIndex >= 0 && e.getClientRects().length
                     && getComputedStyle(e).visibility !== 'hidden');
    window.__controlKey = e => { const k = key(e); return k + '#' + controls().filter(c => key(c) === k).indexOf(e); };
    return controls().map(window.__controlKey);
}"""

# The focused control: its key, whether its focus is visible (an outline of 2px or more, or a box-shadow) and
# the contrast of that outline with what is around it (WCAG 1.4.11: 3:1).
FOCUSED_JS = """() => {
    const e = document.activeElement;
    if (!e || e === document.body || e === document.documentElement) return null;
    const s = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    return {key: window.__controlKey(e), outline, shadow: s.boxShadow !== 'none',
            ring: outline ? window.__contrast.ratio(window.__contrast.parse(s.outlineColor),
                                                    window.__contrast.background(e.parentElement)) : null,
            inView: r.bottom > 0 && r.right > 0 && r.left < innerWidth && r.top < innerHeight,
            html: e.outerHTML.slice(0, 120)};
}"""

# Relative luminance and contrast (WCAG 2.x), the colour behind an element (its own and its ancestors'
# backgrounds composed, from the page down), and every piece of visible text checked against AA: 4.5:1, or 3:1
# for large text (24px, or 18.66px bold).
CONTRAST_JS = """() => {
    const parse = c => {
        const m = /rgba?\\(([^)]+)\\)/.exec(c || '');
        if (!m) return null;
        const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(v => v.endsWith('%') ? parseFloat(v) / 100 : +v);
        return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
    };
    const over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
                                   b: top.b * top.a + under.b * (1 - top.a), a: 1});
    const channel = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    const luminance = c => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
    const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
                              return (x + 0.05) / (y + 0.05); };
    const chain = e => { const all = []; for (let n = e; n && n.nodeType === 1; n = n.parentElement) all.push(n);
                         return all.reverse(); };
    const background = e => chain(e).reduce((under, n) => {
        const c = parse(getComputedStyle(n).backgroundColor); return c && c.a > 0 ? over(c, under) : under;
    }, {r: 255, g: 255, b: 255, a: 1});
    window.__contrast = {parse, ratio, background};
    const failures = [];
    let checked = 0;
    for (const e of document.querySelectorAll('body *')) {
        if (![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
        const s = getComputedStyle(e);
        const r = e.getBoundingClientRect();
        if (s.visibility === 'hidden' || !r.width || !r.height || r.right <= 0 || r.bottom <= 0
            || r.left >= innerWidth) continue;
        const opacity = chain(e).reduce((o, n) => o * parseFloat(getComputedStyle(n).opacity), 1);
        const color = parse(s.color);
        const behind = background(e);
        const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
        const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
        const got = color ? ratio(over({...color, a: color.a * opacity}, behind), behind) : 0;
        checked += 1;
        if (got < needed) failures.push(`${e.tagName.toLowerCase()}.${e.className} "${e.textContent.trim().slice(0, 30)}":`
                                        + ` ${s.color} on ${JSON.stringify(behind)} = ${got.toFixed(2)} < ${needed}`);
    }
    return {checked, failures};
}"""

UNLABELLED_JS = """() => [
    ...[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')),
    ...[...document.querySelectorAll('a[href], button')]
        .filter(e => !(e.textContent || '').trim() && !e.getAttribute('aria-label') && !e.getAttribute('title')),
].map(e => e.outerHTML.slice(0, 160))"""


def keyboard_and_contrast(page, where: str) -> None:
    """Everything on the page shown: contrast, labels, and each control reached with Tab, its focus visible."""
    contrast = page.evaluate(CONTRAST_JS)
    assert contrast["checked"] > 0 and not contrast["failures"], f"{where}: text below WCAG AA:\n  " + \
        "\n  ".join(contrast["failures"])
    assert page.evaluate(UNLABELLED_JS) == [], f"{where}: controls without a label"
    controls = page.evaluate(CONTROLS_JS)
    assert controls, where
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    reached: dict[str, dict] = {}
    for _ in range(2 * len(controls) + 4):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED_JS)
        if focused:
            reached.setdefault(focused["key"], focused)
        if set(controls) <= set(reached):
            break
    assert set(controls) <= set(reached), f"{where}: not reached with Tab: {sorted(set(controls) - set(reached))}"
    unseen = [f"{f['html']} (ring contrast {f['ring'] and round(f['ring'], 2)}, in view {f['inView']})"
              for f in reached.values()
              if not ((f["outline"] and f["ring"] >= 3) or f["shadow"]) or not f["inView"]]
    assert not unseen, f"{where}: focus not visible on:\n  " + "\n  ".join(unseen)


def test_every_control_is_reached_with_tab_visibly_labelled_and_in_contrast(running_hub, browser_context,
                                                                            signed_in):
    base = running_hub.url
    page = watched_page(browser_context)
    page.clock.install()  # the page's timers stand still: no live refresh replaces a control while tabbing
    page.goto(f"{base}/monitor/login")
    keyboard_and_contrast(page, "the sign-in page")
    add_session(browser_context, running_hub, signed_in(running_hub, "administrator")[1])
    for item in navigation(running_hub):
        page.goto(base + item.path)
        keyboard_and_contrast(page, f"{item.path} (fr)")
    page.goto(f"{base}/monitor/no-such-page")
    keyboard_and_contrast(page, "an error page")
    page.goto(f"{base}/monitor/")
    with page.expect_navigation():
        page.click('nav.languages a[lang="ar"]')
    keyboard_and_contrast(page, "the overview (ar)")


def test_the_contrast_check_sees_pale_text_and_the_focus_check_an_invisible_focus(browser_page):
    browser_page.set_content('<!doctype html><html><body><p>fine</p><p style="color:#aaa">pale</p>'
                             '<a href="#x" style="outline:none">quiet</a></body></html>')
    contrast = browser_page.evaluate(CONTRAST_JS)
    assert contrast["checked"] == 3 and len(contrast["failures"]) == 1 and "pale" in contrast["failures"][0]
    with pytest.raises(AssertionError, match="focus not visible"):
        browser_page.set_content('<!doctype html><html><body><a href="#x" style="outline:none">quiet</a></body>'
                                 "</html>")
        keyboard_and_contrast(browser_page, "a made-up page")


def test_the_live_parts_of_each_page_refresh_in_place(running_hub, browser_context, signed_in):
    """Every `data-refresh` part of the navigation's pages is replaced by its fragment when its time comes
    (console.js marks it `data-refreshed`), without a console error or a failed request."""
    base = running_hub.url
    page = watched_page(browser_context)
    page.clock.install()  # time is moved on by the test: no waiting for the parts' periods
    add_session(browser_context, running_hub, signed_in(running_hub, "administrator")[1])
    live = 0
    for item in navigation(running_hub):
        page.goto(base + item.path)
        periods = page.eval_on_selector_all("[data-refresh]", "els => els.map(e => +(e.dataset.every || 5))")
        if not periods:
            continue
        live += len(periods)
        page.clock.run_for(max(periods) * 1000 + 100)
        page.wait_for_function("() => [...document.querySelectorAll('[data-refresh]')]"
                               ".every(e => e.hasAttribute('data-refreshed'))", timeout=5000)
        assert page.inner_text("main h1").strip(), item.path
    if not live:
        pytest.skip("no page of the navigation has a live part yet")


# ---- screens ----------------------------------------------------------------------------------------------

def overflow(page) -> int:
    """How far the page is wider than the window (0: no horizontal scrolling)."""
    return page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                         " - document.documentElement.clientWidth")


def test_the_pages_fit_a_tablet_and_a_laptop_screen(running_hub, browser_context, signed_in):
    """No horizontal scrolling at 768x1024 or 1366x768, in French and Arabic; screenshots at the laptop's."""
    base = running_hub.url
    for locale, lang in (("fr-FR", "fr"), ("ar", "ar")):
        context = browser_context.another(locale=locale)
        page = watched_page(context)
        page.goto(f"{base}/monitor/login")
        fits(page, f"the sign-in page ({lang})")
        if lang == "fr":
            screenshot(page, "login")
        add_session(context, running_hub, signed_in(running_hub, "administrator")[1])
        for item in navigation(running_hub):
            page.goto(base + item.path)
            fits(page, f"{item.path} ({lang})")
            slug = re.sub(r"[^a-z0-9]+", "-", item.path.removeprefix("/monitor")).strip("-") or "overview"
            screenshot(page, f"{slug}-{lang}")


def fits(page, where: str) -> None:
    """The page shown fits a tablet and a laptop screen (ends on the laptop's)."""
    for screen in (TABLET, LAPTOP):
        page.set_viewport_size(screen)
        assert overflow(page) <= 0, f"{where} is wider than {screen['width']}x{screen['height']}"

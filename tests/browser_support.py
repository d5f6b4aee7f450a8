"""A real browser for the console's tests: Debian's Chromium driven by Playwright for Python.

    browser          (session) one headless Chromium per pytest-xdist worker
    browser_context  a fresh context for each test (no cookie, no storage carried over); the pages opened
                     in it are watched: a console error, an uncaught script error or a failed request fails
                     the test when it ends, unless the test said it expects it (`problems.expect(...)`)
    browser_page     a page of that context; `browser_page.problems` is the watch

Playwright's own browser download is not used (the network is closed here): it launches the system
Chromium (`HUB_CHROMIUM`, /usr/bin/chromium by default; `make test` installs the Debian package when it is
missing) with the background networking of a normal profile switched off, in a fresh profile of its own.
Without Chromium or Playwright the browser tests are skipped with the reason, unless HUB_REQUIRE_POSTGRES=1
(CI, `.ci/run`) makes that a failure: CI must run them.

tests/conftest.py loads this module as a plugin: every test file has the fixtures, and a worker starts one
browser however many files use it."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.settings import PROJECT_ROOT

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"  # CI: a browser test that cannot run is a failure
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"
# Without the background networking flags Chromium keeps reaching for Google's services, whose connections a
# closed network refuses (and a quiet machine should not make anyway).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--mute-audio"]
TIMEOUT_MS = 10_000
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}

def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"the browser tests must run here (HUB_REQUIRE_POSTGRES=1) but {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for this worker's browser tests."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"there is no Chromium at {CHROMIUM} (make test installs the Debian package chromium; "
                     "HUB_CHROMIUM names another)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright for Python is not installed ({exc}; it is in the test extras: make install)")
    driver = sync_playwright().start()
    try:
        # launch() gives every browser a fresh temporary profile (user-data-dir) of its own, removed at close
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                          timeout=60_000)
    except Exception as exc:  # noqa: BLE001 - whatever stops Chromium from starting, said in the test's words
        driver.stop()
        _unavailable(f"Chromium at {CHROMIUM} did not start: {str(exc).strip().splitlines()[0]}")
    yield launched
    launched.close()
    driver.stop()


@dataclass
class Problems:
    """What went wrong in a context's pages: console errors, uncaught script errors, failed requests and
    sub-resources (scripts, styles, images, icons, fetches) answered with an error status. A page itself
    answered with 4xx is the test's business (it checks the status), and so is Chromium's console line about
    it ("Failed to load resource: ... status of 403"); anything else a test expects it says with `expect`."""

    seen: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)
    watched: set[int] = field(default_factory=set)
    refused_pages: set[str] = field(default_factory=set)

    def expect(self, *patterns: str) -> None:
        """Problems matching any of these regular expressions are expected by the test (not failures)."""
        self.allowed += [re.compile(p) for p in patterns]

    def unexpected(self) -> list[str]:
        return [problem for problem in self.seen if not any(p.search(problem) for p in self.allowed)]

    def watch(self, page) -> None:
        if id(page) in self.watched:
            return
        self.watched.add(id(page))
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.seen.append(f"uncaught script error on {page.url}: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _failed(self, request) -> None:
        if request.failure == "net::ERR_ABORTED":
            return  # cancelled because the page was left (an icon still loading), not refused
        self.seen.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response) -> None:
        if response.status < 400:
            return
        if response.request.resource_type == "document":
            self.refused_pages.add(response.url)
        else:
            self.seen.append(f"{response.request.resource_type} {response.url} answered {response.status}")

    def _console(self, page, message) -> None:
        if message.type not in ("error", "assert"):
            return
        where = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and where in self.refused_pages:
            return  # the page's own status, which the test checks
        self.seen.append(f"console {message.type} on {page.url}: {message.text} ({where or '?'})")


def new_context(browser, problems: Problems, **options):
    """A fresh context (French unless `locale` says otherwise) whose every page `problems` watches."""
    options.setdefault("locale", "fr-FR")
    options.setdefault("viewport", LAPTOP)
    options.setdefault("timezone_id", "Africa/Casablanca")
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    context.on("page", problems.watch)
    return context


@pytest.fixture
def browser_context(browser):
    """A fresh browser context for the test; fails the test on a console error or failed request (Problems)."""
    problems = Problems()
    contexts = []

    def make(**options):
        """Another fresh context (its own cookies: another person, language or screen), watched the same."""
        made = new_context(browser, problems, **options)
        made.problems, made.another = problems, make
        contexts.append(made)
        return made
    context = make()
    yield context
    for made in contexts:
        made.close()
    unexpected = problems.unexpected()
    assert not unexpected, "the browser reported problems:\n  " + "\n  ".join(unexpected)


@pytest.fixture
def browser_page(browser_context):
    """A page of a fresh context (French, laptop screen); `.problems` is its watch (see Problems)."""
    page = browser_context.new_page()
    page.problems = browser_context.problems
    page.problems.watch(page)  # (the context's "page" event may come after the first navigation)
    return page


def screenshot(page, name: str) -> Path:
    """The page's full screenshot as var/screenshots/<name>.png (git-ignored; the README's are in docs/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

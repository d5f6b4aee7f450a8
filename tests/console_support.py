"""The console in tests: accounts, and an HTTP client signed in as a person (the browser tests drive Chromium,
tests/test_console_browser.py)."""
from __future__ import annotations

import itertools
import re

import httpx

from hub.access.accounts import create_user

PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


def make_user(sessions, role: str, *, username: str | None = None, post: str | None = None,
              password: str = PASSWORD, name: str | None = None) -> tuple[str, str]:
    """A new console account of `role` (a consular agent: at `post`); returns (username, password)."""
    username = username or f"{role.replace('_', '')[:12]}{next(_numbers)}"
    with sessions.begin() as session:
        create_user(session, username=username, name=name or f"Test {role}", role=role, password=password,
                    created_by="tests", post_code=post)
    return username, password


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client: httpx.Client, username: str, password: str, *, next_path: str = "/monitor/") -> httpx.Response:
    """Sign `client` in through the form, as a browser does (the form's own token, then the post)."""
    form = client.get("/monitor/login")
    token = _CSRF.search(form.text).group(1)
    return client.post("/monitor/login", data={"username": username, "password": password, "csrf_token": token,
                                               "next": next_path})


class ConsoleClient(httpx.Client):
    """An httpx client signed in to the console as `username`; `.csrf` is its session's CSRF token and
    `post_form(path, data)` sends a form with it, as the console's pages do."""

    def __init__(self, base_url: str, username: str, password: str = PASSWORD, **kwargs):
        super().__init__(base_url=base_url, timeout=30, **kwargs)
        answer = sign_in(self, username, password)
        if answer.status_code != 303:
            raise AssertionError(f"signing in as {username} answered {answer.status_code}")
        self.csrf = _CSRF.search(self.get("/monitor/").text).group(1)

    def __enter__(self) -> "ConsoleClient":  # opened (signed in) already
        return self

    def post_form(self, path: str, data: dict | None = None, **kwargs) -> httpx.Response:
        return self.post(path, data={**(data or {}), "csrf_token": self.csrf}, **kwargs)

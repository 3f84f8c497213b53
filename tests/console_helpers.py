"""Helpers for the console's tests: staff accounts made as the operator would (the same function
as `pushsvc staff create`), and a browser-like client that signs in, keeps its cookies and sends
each form with the CSRF token of the page it came from.

The client keeps cookies itself: the test service's public URL is https, so its cookies are Secure,
and aiohttp's cookie jar would not send them to the plain-http loopback server the tests run."""

from __future__ import annotations

import html as html_lib
import itertools
import re
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pyotp

from pushsvc.settings import Settings
from pushsvc.staff.accounts import StaffIn, create_staff
from pushsvc.store.db import Database
from tests.conftest import Api

PASSWORD = "a long enough password 1"
_counter = itertools.count(1)
_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)
_ACTION = re.compile(r'\baction="([^"]*)"', re.I)
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"', re.I)


async def make_staff(api: Api, department_id: int | None, role: str, username: str | None = None,
                     password: str | None = None, **contacts: Any) -> dict[str, Any]:
    """A person made with the account function the CLI uses: {"id", "username", "password", "role",
    "department_id"}. An overseer takes department_id None."""
    username = username or f"{role.replace('_', '-')}-{next(_counter)}"
    password = password or PASSWORD
    db = Database(Settings(_env_file=None).database_url)  # type: ignore[call-arg]
    try:
        staff_id, password = await create_staff(
            db, "cli", department_id,
            StaffIn(username=username, display_name=contacts.pop("display_name", username.title()), role=role,
                    **contacts),
            password,
        )
    finally:
        await db.close()
    return {"id": staff_id, "username": username, "password": password, "role": role, "department_id": department_id}


class ConsoleClient:
    """One browser: its own cookies, no redirects followed (a test looks at the 303s)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        # The tests read the pages' English words; a person's language choice is this cookie.
        self.cookies: dict[str, str] = {"pushsvc_console_lang": "en"}
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        async with self.session.request(method, self.api.base + path, headers=headers, allow_redirects=False,
                                        **kwargs) as resp:
            text = await resp.text()
            for raw in resp.headers.getall("Set-Cookie", []):
                self._keep(raw)
            return resp.status, text, resp.headers

    def _keep(self, raw: str) -> None:
        for name, morsel in SimpleCookie(raw).items():
            if morsel["max-age"] == "0" or not morsel.value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    async def get(self, path: str) -> tuple[int, str, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, form: dict[str, str], *, page: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
        """Posts `form` to `path` with the CSRF token of the form posting there on `page` (default
        `path` itself, else /console)."""
        token = await self.token(page or _page_of(path), path)
        return await self.request("POST", path, data={"csrf_token": token, **form}, headers=headers or {})

    async def token(self, page: str, action: str) -> str:
        status, html, _ = await self.get(page)
        assert status == 200, (page, status, html[:500])
        return form_token(html, action)

    async def follow(self, location: str) -> tuple[int, str, Any]:
        return await self.get(_path(location))


def form_token(html: str, action: str) -> str:
    """The CSRF token of the page's form that posts to `action` (its path)."""
    for form in _FORM.findall(html):
        found = _ACTION.search(form)
        if found and urlsplit(html_lib.unescape(found.group(1))).path == urlsplit(action).path:
            token = _TOKEN.search(form)
            assert token, form
            return html_lib.unescape(token.group(1))
    raise AssertionError(f"no form posting to {action}")


def _page_of(path: str) -> str:
    """The page a form posting to `path` is on: the path itself for most, its parent for an action
    under it (/console/staff/3/disable is on /console/staff)."""
    if path in ("/console/login", "/console/totp", "/console/account", "/console/staff", "/console/settings"):
        return path
    if path == "/console/logout":
        return "/console/account"
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) > 3 else path


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def signed_in(api: Api, username: str, password: str, totp_secret: str | None = None) -> ConsoleClient:
    """A client signed in as `username` (giving the code of `totp_secret` if one is asked for)."""
    client = ConsoleClient(api)
    status, html, headers = await client.post("/console/login", {"username": username, "password": password})
    assert status == 303, (status, html[:800])
    if headers["Location"].startswith("/console/totp"):
        assert totp_secret is not None, "a second factor is due"
        status, html, headers = await client.post("/console/totp", {"code": pyotp.TOTP(totp_secret).now()},
                                                  page=_path(headers["Location"]))
        assert status == 303, (status, html[:800])
    return client

"""The console's staff sign-in over real HTTP: passwords, lock-out, the second factor, server-side
sessions revoked at once, the rights of each role on the account, staff and settings pages, the
operator's CLI and the admin token's bootstrap API."""

from __future__ import annotations

import asyncio
import html as html_lib
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import sqlalchemy as sa

from pushsvc.cli import main as cli
from pushsvc.console.session import COOKIE
from pushsvc.core.clock import now
from pushsvc.settings import Settings, get_settings
from pushsvc.store.db import Database
from pushsvc.store.schema import audit_log, staff_sessions
from pushsvc.store.schema import staff as staff_table
from tests.conftest import ADMIN, Api, screenshot_path, serving
from tests.console_helpers import ConsoleClient, form_token, make_staff, signed_in


def _next(location: str) -> tuple[str, str | None]:
    parts = urlsplit(location)
    return parts.path, parse_qs(parts.query).get("next", [None])[0]


async def _audit_actions(settings: Settings) -> list[str]:
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            return [r[0] for r in await conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.id))]
    finally:
        await db.close()


async def test_sign_in_and_out(api: Api, settings: Settings) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "drafter")
    anonymous = ConsoleClient(api)
    try:
        status, _, headers = await anonymous.get("/console")
        assert status == 303 and headers["Location"] == "/console/login"
        status, _, headers = await anonymous.get("/console/account")
        assert status == 303 and _next(headers["Location"]) == ("/console/login", "/console/account")
        status, html, headers = await anonymous.get("/console/login")
        assert status == 200 and 'name="csrf_token"' in html
        assert headers["Cache-Control"].startswith("no-store")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
    finally:
        await anonymous.close()

    client = await signed_in(api, person["username"], person["password"])
    try:
        status, html, headers = await client.get("/console")
        assert status == 200 and person["username"].title() in html
        status, html, _ = await client.get("/console/account")
        assert status == 200
        kept = dict(client.cookies)
        status, _, headers = await client.post("/console/logout", {}, page="/console")
        assert status == 303 and headers["Location"] == "/console/login" and COOKIE not in client.cookies
        status, _, headers = await client.get("/console")
        assert status == 303 and headers["Location"] == "/console/login"
        # The old cookie, kept by someone, opens nothing: the session ended on the server.
        client.cookies = kept
        status, _, headers = await client.get("/console/account")
        assert status == 303 and headers["Location"].startswith("/console/login")
    finally:
        await client.close()
    assert {"staff_signed_in", "staff_signed_out"} <= set(await _audit_actions(settings))


async def _db_execute(settings: Settings, statement: Any) -> None:
    db = Database(settings.database_url)
    try:
        async with db.write() as conn:
            await conn.execute(statement)
    finally:
        await db.close()


async def test_wrong_password_unknown_user_and_lock_out(api: Api, settings: Settings) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "approver")
    client = ConsoleClient(api)
    try:
        status, unknown, _ = await client.post("/console/login", {"username": "nobody-here", "password": "x" * 14})
        assert status == 401
        status, wrong, _ = await client.post("/console/login", {"username": person["username"], "password": "x" * 14})
        assert status == 401
        message = "The username or password is not right."
        assert message in unknown and message in wrong
        assert f'value="{person["username"]}"' in wrong  # what was typed is kept (not the password)
        for _ in range(3):
            await client.post("/console/login", {"username": person["username"], "password": "wrong password 12"})
        status, html, _ = await client.post("/console/login", {"username": person["username"], "password": "wrong again 123"})
        assert status == 429 and "locked" in html
        # Locked: even the right password is refused for now.
        status, html, _ = await client.post("/console/login", {"username": person["username"], "password": person["password"]})
        assert status == 429 and "locked" in html
        assert "staff_locked" in await _audit_actions(settings)
        # The lock's time passes: the right password works again, and the count starts afresh.
        await _db_execute(settings, sa.update(staff_table).where(staff_table.c.id == person["id"])
                          .values(locked_until=now() - timedelta(seconds=1)))
        status, _, headers = await client.post("/console/login", {"username": person["username"], "password": person["password"]})
        assert status == 303 and headers["Location"] == "/console"
    finally:
        await client.close()


async def test_sign_in_form_needs_its_csrf_token(api: Api) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "drafter")
    client = ConsoleClient(api)
    try:
        await client.get("/console/login")  # the cookie the token binds to, but no token
        status, html, _ = await client.request("POST", "/console/login", data={"username": person["username"],
                                                                              "password": person["password"]})
        assert status == 403 and COOKIE not in client.cookies
        status, _, _ = await client.post("/console/login", {"username": person["username"], "password": person["password"]},
                                         headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 403 and COOKIE not in client.cookies
    finally:
        await client.close()
    signed = await signed_in(api, person["username"], person["password"])
    try:
        # A signed-in form posted without its token: refused, nothing changed.
        status, _, _ = await signed.request("POST", "/console/logout", data={})
        assert status == 403
        assert (await signed.get("/console"))[0] == 200
    finally:
        await signed.close()


def _setup(html: str) -> tuple[str, str]:
    """The key and the set-up token a set-up form shows."""
    secret = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', html)
    token = re.search(r'name="enrol_token" value="([^"]+)"', html)
    assert secret and token, html[:3000]
    assert 'src="data:image/png;base64,' in html  # the QR code, from this page itself
    return secret.group(1).replace(" ", ""), html_lib.unescape(token.group(1))


async def test_totp_enrol_then_asked_and_a_code_is_good_once(api: Api, settings: Settings) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "drafter")
    client = await signed_in(api, person["username"], person["password"])
    try:
        status, html, _ = await client.get("/console/account")
        secret, token = _setup(html)
        status, html, _ = await client.post("/console/account/totp", {"enrol_token": token, "code": "000000"})
        assert status == 422 and 'aria-invalid="true"' in html
        first = pyotp.TOTP(secret).now()
        status, _, headers = await client.post("/console/account/totp", {"enrol_token": token, "code": first})
        assert status == 303 and headers["Location"] == "/console/account?done=totp"
    finally:
        await client.close()

    second = ConsoleClient(api)
    try:
        status, _, headers = await second.post("/console/login", {"username": person["username"],
                                                                   "password": person["password"]})
        assert status == 303 and headers["Location"].startswith("/console/totp")
        # Owing the code, the session opens nothing else.
        status, _, headers = await second.get("/console/account")
        assert status == 303 and headers["Location"] == "/console/totp"
        # The code used to enrol was used: it is not good again.
        status, html, _ = await second.post("/console/totp", {"code": first})
        assert status == 401 and "used already" in html
        # The next step's code (within the drift allowed) is good, once.
        code = pyotp.TOTP(secret).at(now(), counter_offset=1)
        status, _, headers = await second.post("/console/totp", {"code": code})
        assert status == 303 and headers["Location"] == "/console"
        assert (await second.get("/console/account"))[0] == 200
    finally:
        await second.close()
    third = ConsoleClient(api)
    try:
        await third.post("/console/login", {"username": person["username"], "password": person["password"]})
        status, _, _ = await third.post("/console/totp", {"code": code}, page="/console/totp")
        assert status == 401
        assert (await third.get("/console"))[0] == 303
    finally:
        await third.close()
    assert "staff_totp_enrolled" in await _audit_actions(settings)


async def test_required_totp_sends_to_enrol_after_the_password(api: Api) -> None:
    dept = await api.department()
    admin = await make_staff(api, dept["id"], "department_admin")
    drafter = await make_staff(api, dept["id"], "drafter")
    boss = await signed_in(api, admin["username"], admin["password"])
    try:
        status, _, headers = await boss.post("/console/settings", {"require_totp": "on"})
        assert status == 303
        status, html, _ = await boss.get("/console/settings")
        assert 'id="require_totp" name="require_totp" value="on" checked' in html
    finally:
        await boss.close()

    client = ConsoleClient(api)
    try:
        status, _, headers = await client.post("/console/login", {"username": drafter["username"],
                                                                   "password": drafter["password"]})
        assert status == 303 and headers["Location"].startswith("/console/totp")
        status, _, headers = await client.get("/console/account")
        assert status == 303 and headers["Location"] == "/console/totp"
        status, html, _ = await client.get("/console/totp")
        assert status == 200 and "Set up your authenticator" in html
        secret, token = _setup(html)
        status, _, headers = await client.post("/console/totp", {"enrol_token": token, "code": pyotp.TOTP(secret).now()})
        assert status == 303 and headers["Location"] == "/console"
        assert (await client.get("/console"))[0] == 200
    finally:
        await client.close()


async def test_sessions_revoked_are_refused_at_once(api: Api) -> None:
    dept = await api.department()
    admin = await make_staff(api, dept["id"], "department_admin")
    person = await make_staff(api, dept["id"], "drafter")
    phone = await signed_in(api, person["username"], person["password"])
    laptop = await signed_in(api, person["username"], person["password"])
    boss = await signed_in(api, admin["username"], admin["password"])
    try:
        # From the laptop, the person ends the phone's session.
        status, html, _ = await laptop.get("/console/account")
        ids = re.findall(r'name="session" value="(\d+)"', html)
        assert len(ids) == 1
        status, _, _ = await laptop.post("/console/account/sessions", {"session": ids[0]})
        assert status == 303
        assert (await phone.get("/console"))[0] == 303
        assert (await laptop.get("/console"))[0] == 200

        # Their admin ends all their sessions.
        status, _, _ = await boss.post(f"/console/staff/{person['id']}/sessions/end", {}, page="/console/staff")
        assert status == 303
        assert (await laptop.get("/console"))[0] == 303

        # Signed in again, then disabled: refused at once, and no new sign-in.
        again = await signed_in(api, person["username"], person["password"])
        try:
            status, _, _ = await boss.post(f"/console/staff/{person['id']}/disable", {}, page="/console/staff")
            assert status == 303
            assert (await again.get("/console"))[0] == 303
            status, html, _ = await again.post("/console/login", {"username": person["username"],
                                                                   "password": person["password"]})
            assert status == 401 and "The username or password is not right." in html
        finally:
            await again.close()
    finally:
        for c in (phone, laptop, boss):
            await c.close()


async def test_rights_on_the_staff_and_settings_pages(api: Api) -> None:
    ours, theirs = await api.department(), await api.department("市税务局")
    drafter = await make_staff(api, ours["id"], "drafter")
    approver = await make_staff(api, ours["id"], "approver")
    their_admin = await make_staff(api, theirs["id"], "department_admin")
    overseer = await make_staff(api, None, "overseer")
    client = await signed_in(api, drafter["username"], drafter["password"])
    try:
        for path in ("/console/staff", "/console/settings"):
            status, html, headers = await client.get(path)
            assert status == 403 and "text/html" in headers["Content-Type"]
        status, html, _ = await client.get("/console")
        assert 'href="/console/staff"' not in html and 'href="/console/drafts"' in html
        status, _, _ = await client.request("POST", f"/console/staff/{approver['id']}/disable",
                                            data={"csrf_token": form_token(html, "/console/logout")})
        assert status == 403
    finally:
        await client.close()

    other = await signed_in(api, their_admin["username"], their_admin["password"])
    try:
        status, html, _ = await other.get("/console/staff")
        assert status == 200 and approver["username"] not in html
        # With a good token of the page's person forms (their own row's), aimed at our person: not found.
        token = form_token(html, f"/console/staff/{their_admin['id']}/sessions/end")
        for action in ("disable", "sessions/end"):
            status, html, _ = await other.request("POST", f"/console/staff/{approver['id']}/{action}",
                                                  data={"csrf_token": token})
            assert status == 404 and "There is no such person in your department." in html
    finally:
        await other.close()
    still = await signed_in(api, approver["username"], approver["password"])  # not disabled
    await still.close()

    city = await signed_in(api, overseer["username"], overseer["password"])
    try:
        assert (await city.get("/console/staff"))[0] == 403
        assert (await city.get("/console/settings"))[0] == 403
        assert (await city.get("/console/account"))[0] == 200
    finally:
        await city.close()


async def test_admin_adds_a_person_who_signs_in(api: Api, settings: Settings) -> None:
    dept = await api.department()
    admin = await make_staff(api, dept["id"], "department_admin")
    boss = await signed_in(api, admin["username"], admin["password"])
    try:
        form = {"display_name": "王小明", "username": "Wang.XM", "role": "drafter", "email": "wang@example.gov.cn",
                "phone": ""}
        status, html, headers = await boss.post("/console/staff", form)
        assert status == 200 and headers["Cache-Control"].startswith("no-store")
        password = re.search(r'<code id="new-password">([^<]+)</code>', html)
        assert password
        # The same username again, and an overseer: the fields named, everything typed kept.
        status, html, _ = await boss.post("/console/staff", {**form, "username": "wang.xm", "display_name": "王二"})
        assert status == 422 and "This username is taken." in html and 'value="王二"' in html
        status, html, _ = await boss.post("/console/staff", {**form, "username": "city.eye", "role": "overseer"})
        assert status == 422 and 'id="role-error"' in html
        status, html, _ = await boss.post("/console/staff", {**form, "username": "x"})
        assert status == 422 and 'id="username-error"' in html
    finally:
        await boss.close()
    person = await signed_in(api, "wang.xm", html_lib.unescape(password.group(1)))
    try:
        status, html, _ = await person.get("/console/account")
        assert status == 200 and "王小明" in html and "wang@example.gov.cn" in html
    finally:
        await person.close()
    assert "staff_created" in await _audit_actions(settings)


async def test_password_change_ends_the_other_sessions(api: Api) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "drafter")
    here = await signed_in(api, person["username"], person["password"])
    there = await signed_in(api, person["username"], person["password"])
    new = "another long password 2"
    try:
        status, html, _ = await here.post("/console/account/password", {
            "current_password": "not it at all 1", "new_password": new, "repeat_password": new})
        assert status == 422 and 'id="current_password-error"' in html
        status, html, _ = await here.post("/console/account/password", {
            "current_password": person["password"], "new_password": "short", "repeat_password": "short"})
        assert status == 422 and "Use at least 12 characters." in html
        status, html, _ = await here.post("/console/account/password", {
            "current_password": person["password"], "new_password": person["username"] + "-padding",
            "repeat_password": "different one 12"})
        assert status == 422 and 'id="repeat_password-error"' in html
        status, _, headers = await here.post("/console/account/password", {
            "current_password": person["password"], "new_password": new, "repeat_password": new})
        assert status == 303
        assert (await here.get("/console"))[0] == 200
        assert (await there.get("/console"))[0] == 303
    finally:
        await here.close()
        await there.close()
    again = await signed_in(api, person["username"], new)
    await again.close()


async def test_settings_keys_issued_and_revoked(api: Api, settings: Settings) -> None:
    dept = await api.department()
    admin = await make_staff(api, dept["id"], "department_admin")
    boss = await signed_in(api, admin["username"], admin["password"])
    try:
        status, html, _ = await boss.post("/console/settings/keys", {"name": "case system", "kind": "test"})
        assert status == 200
        key = re.search(r'<code id="new-key">([^<]+)</code>', html)
        assert key and key.group(1).startswith("psk_test_")
        assert (await api.call("GET", "/v1/policies", key.group(1)))[0] == 200
        status, html, _ = await boss.post("/console/settings/keys", {"name": "case system", "kind": "live"})
        assert status == 422 and 'id="name-error"' in html and 'value="case system"' in html
        status, html, _ = await boss.post("/console/settings/keys", {"name": "  ", "kind": "live"})
        assert status == 422 and 'id="name-error"' in html
        status, html, _ = await boss.get("/console/settings")
        key_id = re.findall(r'action="/console/settings/keys/(\d+)/revoke"', html)[-1]
        status, _, _ = await boss.post(f"/console/settings/keys/{key_id}/revoke", {}, page="/console/settings")
        assert status == 303
        assert (await api.call("GET", "/v1/policies", key.group(1)))[0] == 401
        status, _, _ = await boss.post("/console/settings", {"keys_publish_without_review": "on"})
        assert status == 303
    finally:
        await boss.close()
    actions = await _audit_actions(settings)
    assert {"key.issue", "key.revoke", "department_settings_changed"} <= set(actions)


async def test_the_cli_creates_an_account_that_signs_in(api: Api, settings: Settings,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    dept = await api.department()
    get_settings.cache_clear()
    try:
        code = await asyncio.to_thread(cli, ["staff", "create", "--department", str(dept["id"]), "--role", "approver",
                                             "--username", "li.si", "--display-name", "李四", "--generate-password"])
        assert code == 0
        password = capsys.readouterr().out.strip().splitlines()[-1]
        assert await asyncio.to_thread(cli, ["staff", "create", "--role", "approver", "--username", "no.dept"]) == 2
        assert await asyncio.to_thread(cli, ["staff", "create", "--department", str(dept["id"]), "--role", "drafter",
                                             "--username", "li.si"]) == 1
        assert "--username: This username is taken." in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    client = await signed_in(api, "li.si", password)
    try:
        status, html, _ = await client.get("/console")
        assert status == 200 and "李四" in html
    finally:
        await client.close()


async def test_bootstrap_api_needs_the_admin_token(api: Api) -> None:
    dept = await api.department()
    body = {"username": "first.admin", "display_name": "First Admin", "role": "department_admin"}
    path = f"/v1/departments/{dept['id']}/staff"
    assert (await api.call("POST", path, json=body))[0] == 401
    assert (await api.call("POST", path, "psk_not_a_key", json=body))[0] == 401
    assert (await api.call("POST", path, dept["api_key"], json=body))[0] == 403
    assert (await api.call("POST", "/v1/staff", dept["api_key"], json={**body, "role": "overseer"}))[0] == 403
    status, made = await api.call("POST", path, ADMIN, json=body)
    assert status == 201 and made["role"] == "department_admin" and len(made["password"]) >= 12
    status, problem = await api.call("POST", path, ADMIN, json=body)
    assert status == 422 and problem["errors"][0]["field"] == "username"
    status, problem = await api.call("POST", path, ADMIN, json={**body, "username": "eye", "role": "overseer"})
    assert status == 422 and problem["errors"][0]["field"] == "role"
    status, problem = await api.call("POST", "/v1/departments/999999/staff", ADMIN, json={**body, "username": "ghost"})
    assert status == 404
    status, problem = await api.call("POST", "/v1/staff", ADMIN, json={**body, "username": "city.eye"})
    assert status == 422 and problem["errors"][0]["field"] == "role"
    status, eye = await api.call("POST", "/v1/staff", ADMIN, json={**body, "username": "city.eye", "role": "overseer"})
    assert status == 201 and eye["department_id"] is None
    status, problem = await api.call("POST", path, ADMIN, json={**body, "username": "bad name!", "email": "nope"})
    assert status == 422 and {e["field"] for e in problem["errors"]} == {"username", "email"}
    for person in (made, eye):
        client = await signed_in(api, person["username"], person["password"])
        await client.close()


async def test_the_session_cookie_and_its_idle_and_absolute_ends(api: Api, settings: Settings) -> None:
    dept = await api.department()
    person = await make_staff(api, dept["id"], "drafter")
    client = ConsoleClient(api)
    try:
        status, _, headers = await client.post("/console/login", {"username": person["username"],
                                                                   "password": person["password"]})
        cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith(f"{COOKIE}="))
        assert status == 303 and {"HttpOnly", "SameSite=Strict", "Secure", "Path=/console"} <= {
            part.strip() for part in cookie.split(";")}
        assert (await client.get("/console"))[0] == 200
        # 31 minutes without a request: the session is over.
        await _db_execute(settings, sa.update(staff_sessions).values(last_seen_at=now() - timedelta(minutes=31)))
        status, _, headers = await client.get("/console")
        assert status == 303 and headers["Location"] == "/console/login"
        await client.post("/console/login", {"username": person["username"], "password": person["password"]})
        assert (await client.get("/console"))[0] == 200
        # 8 hours after signing in, busy or not: over too.
        await _db_execute(settings, sa.update(staff_sessions).values(expires_at=now() - timedelta(seconds=1)))
        assert (await client.get("/console"))[0] == 303
    finally:
        await client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser adds nothing a second database would notice
async def test_the_auth_pages_in_a_browser(api: Api, browser: Any) -> None:
    """Sign-in, home, account, staff and settings at 1280 and 390 px: the CSP lets the console's own
    stylesheet and script load, nothing scrolls sideways, the forms work by keyboard."""
    dept = await api.department()
    admin = await make_staff(api, dept["id"], "department_admin", display_name="张部长")
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    await context.add_cookies([{"name": "pushsvc_console_lang", "value": "en", "url": api.base}])  # English words
    page = await context.new_page()
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    try:
        await page.goto(f"{api.base}/console/staff")
        await page.wait_for_url(lambda url: "/console/login?next=" in url)
        await page.focus("#username")
        await page.keyboard.type(admin["username"])
        await page.keyboard.press("Tab")
        await page.keyboard.type(admin["password"])
        await page.keyboard.press("Enter")
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/staff")
        session = next(c for c in await context.cookies() if c["name"] == COOKIE)
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
        # console.css loaded (the CSP allowed it): the header bar has its colour.
        colour = await page.locator("header.bar").evaluate("el => getComputedStyle(el).backgroundColor")
        assert colour == "rgb(140, 29, 24)"
        for width in (1280, 390):
            await page.set_viewport_size({"width": width, "height": 900})
            for path in ("/console", "/console/account", "/console/staff", "/console/settings"):
                await page.goto(f"{api.base}{path}")
                assert await page.evaluate("document.documentElement.scrollWidth") <= width, (path, width)
                name = path.strip("/").replace("/", "-")
                await page.screenshot(path=str(screenshot_path(f"{name}-{width}")), full_page=True)
        # Adding a person through the form, by label.
        await page.goto(f"{api.base}/console/staff")
        await page.get_by_label("Name", exact=True).fill("李小红")
        await page.get_by_label("Username", exact=True).fill("li.xh")
        await page.get_by_label("Role").select_option("approver")
        await page.get_by_role("button", name="Add").click()
        assert (await page.locator("#new-password").text_content() or "").strip()
        await page.locator("header form[action=\"/console/logout\"] button").click()
        await page.wait_for_url(lambda url: urlsplit(url).path == "/console/login")
    finally:
        await context.close()
    assert not [c for c in complaints if "Content Security Policy" in c], complaints


async def test_sign_in_attempts_are_limited_per_address(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the lock-out of one account, the pages' per-address limit holds guesses across accounts."""
    monkeypatch.setenv("PUSHSVC_PAGE_REQUESTS_PER_MINUTE", "4")
    async with serving(Settings(_env_file=None)) as limited:  # type: ignore[call-arg]
        client = ConsoleClient(limited)
        try:
            statuses = [(await client.request("POST", "/console/login", data={"username": f"guess-{i}",
                                                                              "password": "x" * 12}))[0]
                        for i in range(6)]
        finally:
            await client.close()
    assert statuses[:4] == [403] * 4 and statuses[4:] == [429, 429]

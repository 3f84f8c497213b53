"""The admin page: signing in (session cookie, CSRF on every form), the figures and the server-made
SVG charts, checked in Debian's Chromium and over plain HTTP. SQLite only: the page's figures come
from the report, which tests/test_reports.py checks on both databases."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import pytest

from pushsvc.core.tokens import TokenSigner
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.web import csrf
from pushsvc.web.admin_pages import SESSION_COOKIE
from pushsvc.web.admin_sessions import SESSION
from tests.conftest import ADMIN, SECRET, Api, Workers, eventually, screenshot_path
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import seed

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def get(api: Api, path: str, cookies: dict[str, str] | None = None) -> tuple[int, str, Any]:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())} if cookies else {}
    async with api.session.get(api.base + path, headers=headers, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp


async def post(api: Api, path: str, form: dict[str, str], cookies: dict[str, str]) -> tuple[int, str, SimpleCookie]:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    async with api.session.post(api.base + path, data=form, headers=headers, allow_redirects=False) as resp:
        jar: SimpleCookie = SimpleCookie()
        for header in resp.headers.getall("Set-Cookie", []):
            jar.load(header)
        return resp.status, await resp.text(), jar


def csrf_of(html: str) -> str:
    found = re.search(f'name="{csrf.FIELD}" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_sign_in_cookie_and_csrf_over_http(api: Api) -> None:
    dept = await api.department()
    status, html, resp = await get(api, "/admin")
    assert status == 401 and 'name="token"' in html and '<label for="token">' in html
    assert "script-src" not in resp.headers["Content-Security-Policy"] and "default-src 'none'" in resp.headers["Content-Security-Policy"]
    browser = {csrf.COOKIE: resp.cookies[csrf.COOKIE].value}
    token = {csrf.FIELD: csrf_of(html)}

    # No CSRF token, one for another browser's cookie, or none at all: refused, and no session.
    for form, cookies in [({"token": ADMIN}, browser),
                          ({"token": ADMIN, **token}, {csrf.COOKIE: "another-browser-0123456789"}),
                          ({"token": ADMIN, **token}, {})]:
        status, body, jar = await post(api, "/admin/login", form, cookies)
        assert status == 403 and SESSION_COOKIE not in jar and 'id="token-error"' in body
    status, body, jar = await post(api, "/admin/login", {"token": "not-the-admin-token", **token}, browser)
    assert status == 401 and SESSION_COOKIE not in jar and 'aria-invalid="true"' in body

    status, _, jar = await post(api, "/admin/login", {"token": ADMIN, "lang": "en", **token}, browser)
    assert status == 303
    cookie = jar[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["secure"] and cookie["path"] == "/admin"
    session = {SESSION_COOKIE: cookie.value}
    status, html, resp = await get(api, "/admin?lang=en", session)
    assert status == 200 and dept["name"] in html and '<html lang="en">' in html and "style=" not in html
    assert resp.headers["Cache-Control"] == "no-store"

    # A forged session, or one signed for a previous admin token, is no session.
    forged = TokenSigner(SECRET).sign(SESSION, {"s": "x", "k": "0" * 16})
    for value in ("garbage", forged):
        status, html, _ = await get(api, "/admin", {SESSION_COOKIE: value})
        assert status == 401 and 'name="token"' in html

    # Bad periods are named beside their field; the CSV needs the session too.
    status, html, _ = await get(api, "/admin?from=2026-02-30&to=2026-01-01", session)
    assert status == 422 and 'id="from-error"' in html and 'aria-describedby="from-error"' in html
    status, html, _ = await get(api, "/admin?department_id=999999", session)
    assert status == 422 and 'id="department_id-error"' in html
    status, body, resp = await get(api, f"/admin/report.csv?department_id={dept['id']}", session)
    assert status == 200 and resp.content_type == "text/csv" and body.startswith("\ufeff")
    status, _, _ = await get(api, f"/admin/report.csv?department_id={dept['id']}")
    assert status == 401

    # Signing out needs the form's CSRF token (the sign-in form's will not do).
    status, _, _ = await post(api, "/admin/logout", token, {**session, **browser})
    assert status == 403
    status, html, _ = await get(api, "/admin", {**session, **browser})
    status, _, jar = await post(api, "/admin/logout", {csrf.FIELD: csrf_of(html)}, {**session, **browser})
    assert status == 303 and jar[SESSION_COOKIE].value == ""


async def test_admin_page_renders_its_charts_in_a_browser(api: Api, workers: Workers, sink: SmtpSink, browser: Any) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 8)
    sink.set_faults(reject={"user3@example.com"})
    workers.start()
    for title in ("关于支持中小微企业稳岗扩岗的若干措施", "<b>关于</b>就业补贴的通知"):
        status, _ = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": title})
        assert status == 202

    async def settled() -> bool:
        status, body = await api.call("GET", "/v1/reports/department", key)
        return len(body["policies"]) == 2 and all(p["status"] == "published" and p["messages"]["pending"] == 0
                                                   for p in body["policies"])

    await eventually(settled, timeout=60)

    context = await browser.new_context(viewport={"width": 1100, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    try:
        response = await page.goto(f"{api.base}/admin")
        assert response.status == 401
        await page.fill("#token", "not-the-admin-token-at-all")
        await page.click("button[type=submit]")
        assert await page.locator("#token-error").is_visible()
        await page.fill("#token", ADMIN)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/admin?lang=zh-CN")
        session = next(c for c in await context.cookies() if c["name"] == SESSION_COOKIE)
        assert session["httpOnly"] and session["sameSite"] == "Strict"

        assert await page.title() == f"推送统计 · {dept['name']} · 政策推送 pushsvc"
        charts = page.locator("svg.chart")
        assert await charts.count() == 3
        for i in range(3):
            box = await charts.nth(i).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 20
        bars = page.locator("svg.chart rect.bar")
        # Two funnels of matched, sent and failed (e-mail has no receipts: nothing delivered), a day, a reason.
        assert await bars.count() == 2 * 3 + 1 + 1
        widths = [(await bars.nth(i).bounding_box() or {}).get("width", 0) for i in range(await bars.count())]
        assert all(w > 0 for w in widths)
        # Coloured by admin.css (the CSP let it load), not SVG's default black.
        fill = await bars.first.evaluate("el => getComputedStyle(el).fill")
        assert fill not in ("rgb(0, 0, 0)", "")
        # The title with markup in it is text, in the chart and in the table.
        assert await page.locator("svg.chart text", has_text="<b>关于</b>").count() >= 1
        assert await page.locator("svg.chart b").count() == 0
        await page.screenshot(path=str(screenshot_path("admin")), full_page=True)

        # At 360 px the page does not scroll sideways (wide charts and tables scroll in their boxes).
        await page.set_viewport_size({"width": 360, "height": 800})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360

        await page.click("text=退出")
        await page.wait_for_url("**/admin/login?lang=zh-CN")
        response = await page.goto(f"{api.base}/admin")
        assert response.status == 401
    finally:
        await context.close()
    assert not [c for c in complaints if "Content Security Policy" in c], complaints

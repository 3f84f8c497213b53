"""A person on a phone (Chromium at 360×740, no help from JavaScript: the pages have none) follows
a subscribe QR, fills the form, confirms the SMS code from the SMS stand-in and the e-mailed link
from the SMTP sink, changes what they receive, gets the next policy on the channel they kept and
not on the one they dropped, and unsubscribes. Every page passes axe-style basics and fits the
screen; a screenshot of each is saved.

SQLite only: the browser adds nothing a second database would notice, and the same pages run on
both in test_self_service.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.store.schema import deliveries
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.test_api_foundation import POLICY
from tests.test_qr import decode
from tests.test_self_service import (  # noqa: F401  (gateway, settings_env: the SMS stand-in and its secret)
    EMAIL,
    NATIONAL,
    channels_of,
    code_in,
    codes_to,
    db_rows,
    gateway,
    link_in,
    mail_to,
    settings_env,
    sms_sent,
    subscriber,
)

# Axe-style basics, checked in the page as the browser built it: a language and a title, a label
# (or an accessible name) for every control and link, nothing taken out of keyboard order, and
# nothing wider than the phone's screen.
AXE = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (!document.title.trim()) problems.push("no <title>");
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (["hidden", "submit", "button"].includes(el.type)) continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
      problems.push("unlabelled control " + (el.name || el.id));
  }
  for (const el of document.querySelectorAll("button, a[href], summary"))
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) problems.push("nameless " + el.outerHTML.slice(0, 80));
  for (const el of document.querySelectorAll("[tabindex]"))
    if (el.tabIndex > 0) problems.push("positive tabindex " + el.outerHTML.slice(0, 80));
  const ids = [...document.querySelectorAll("[id]")].map(e => e.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) problems.push("duplicate id " + id);
  if (document.documentElement.scrollWidth > window.innerWidth) problems.push("wider than the screen");
  return problems;
}"""


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "pushsvc.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


class Phone:
    """The browser tab, with the checks every page gets."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def seen(self, name: str, heading: str) -> None:
        assert (await self.page.inner_text("h1")).strip() == heading, name
        assert await self.page.evaluate(AXE) == [], name
        await self.page.screenshot(path=screenshot_path(f"self-service-{name}"), full_page=True)

    async def press(self, selector: str) -> None:
        async with self.page.expect_navigation():
            await self.page.click(selector)


async def _published(api: Api, key: str, policy_id: int) -> bool:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    return status == 200 and body["status"] == "published"


async def test_a_person_subscribes_from_a_qr_code_confirms_changes_and_leaves_on_a_phone(
    api: Api, workers: Workers, gateway: SmsGatewayStub, sink: SmtpSink, settings_env: dict[str, str], browser: Any
) -> None:
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    key = (await api.department())["api_key"]
    context = await browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        phone = Phone(await context.new_page(), api.base)

        # The department's printed QR leads to the subscribe page, its audience and domain chosen.
        async with api.session.get(api.base + "/subscribe/qr.png?audience=enterprise&domain=employment-entrepreneurship") as r:
            [(url, _)] = decode(await r.read())
        qr = urlsplit(url)
        await phone.open(f"{qr.path}?{qr.query}")
        await phone.seen("subscribe", "订阅政策推送")
        page = phone.page
        assert await page.is_checked("#g-enterprise") and await page.is_checked("#d-employment-entrepreneurship")
        await page.fill("#f-enterprise-uscc", "91350100M000100Y43")
        await page.select_option("#f-enterprise-district", "haizhu")
        await page.select_option("#f-enterprise-industry", "C")
        await page.select_option("#f-enterprise-scale", "small")
        await page.fill("#f-name", "广州某某科技有限公司")
        for channel in ("#c-email", "#c-sms"):
            await page.check(channel)
        await page.fill("#f-email", EMAIL)
        await page.fill("#f-phone", "138 0013 8000")
        await page.check("#f-agree")
        await phone.press("form.subscription button[type=submit]")
        await phone.seen("sent", "请确认您的订阅")

        # The SMS code, typed in where the page asks for it.
        [text] = await eventually(lambda: _codes(api, gateway), timeout=20)
        await page.fill("#f-code", code_in(text))
        await phone.press("button[value=verify]")
        await phone.seen("confirmed-by-code", "订阅已确认")
        sid = (await subscriber(settings_env, email=EMAIL)).id
        assert await channels_of(settings_env, sid) == {"sms"}

        # The e-mailed link: its page asks for a press (a mail scanner's visit confirms nothing).
        [mail] = await eventually(lambda: mail_to(sink, EMAIL), timeout=20)
        await phone.open(link_in(mail, "/confirm/"))
        await phone.seen("confirm", "确认订阅")
        await phone.press("form button[type=submit]")
        await phone.seen("confirmed-by-link", "订阅已确认")
        assert await channels_of(settings_env, sid) == {"email", "sms"}

        # Managing: SMS off, e-mail kept.
        await phone.press("a.button")
        await phone.seen("manage", "我的订阅")
        await page.uncheck("#c-sms")
        await phone.press("button[value=save]")
        await phone.seen("manage-saved", "我的订阅")
        assert "已保存" in await page.inner_text("main")
        assert await channels_of(settings_env, sid) == {"email"}

        # The next matching policy comes by e-mail only.
        sink.clear()
        status, policy = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": ["email", "sms"]})
        assert status == 202
        await eventually(lambda: _published(api, key, policy["id"]))
        [pushed] = await eventually(lambda: mail_to(sink, EMAIL), timeout=20)
        assert POLICY["title"] in pushed["Subject"]
        assert len(await _codes(api, gateway)) == 1  # the code, and no policy SMS
        ledger = await db_rows(settings_env, sa.select(deliveries.c.channel).where(deliveries.c.subscriber_id == sid))
        assert [row.channel for row in ledger] == ["email"]

        # Unsubscribing from everything: the next policy reaches no one.
        await phone.press("button[value=leave_all]")
        await phone.seen("unsubscribed", "我的订阅")
        assert "已全部退订" in await page.inner_text("main")
        sink.clear()
        status, second = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": "第二项政策"})
        await eventually(lambda: _published(api, key, second["id"]))
        assert mail_to(sink, EMAIL) == [] and (await subscriber(settings_env, id=sid)).status == "unsubscribed"

        # The other pages, in the other languages, and a link that is no good.
        for path, name, heading in (("/manage?lang=zh-HK", "manage-request", "管理訂閱"),
                                    ("/verify?lang=en", "verify", "Enter the SMS code"),
                                    ("/manage/not-a.token", "bad-link", "链接无效")):
            await phone.open(path)
            await phone.seen(name, heading)
    finally:
        await context.close()


async def _codes(api: Api, gw: SmsGatewayStub) -> list[str]:
    return codes_to(await sms_sent(api, gw), NATIONAL)

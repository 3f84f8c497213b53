"""A person at 390 px (a phone) and at 1280 px (a service hall's screen), no JavaScript (the pages
have none): finds which policies apply to them (/check), subscribes from the answer with the form
filled in, follows a policy from its page through the e-mailed manage link, and receives its repeal
notice. Every page passes the axe-style basics of test_self_service_browser and fits the screen; a
screenshot of each is saved. SQLite only, as that test says why."""

from __future__ import annotations

from typing import Any

import pytest

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.test_api_foundation import POLICY, enterprise
from tests.test_self_service import link_in, mail_to
from tests.test_self_service_browser import AXE, database_url  # noqa: F401  (SQLite only)


class Tab:
    def __init__(self, page: Any, base: str, width: int) -> None:
        self.page, self.base, self.width = page, base, width

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def seen(self, name: str) -> None:
        assert await self.page.evaluate(AXE) == [], name
        await self.page.screenshot(path=screenshot_path(f"engage-{name}-{self.width}"), full_page=True)

    async def press(self, selector: str) -> None:
        async with self.page.expect_navigation():
            await self.page.click(selector)


@pytest.mark.parametrize("width", [390, 1280])
async def test_check_subscribe_follow_and_hear_of_the_repeal(
    api: Api, workers: Workers, sink: SmtpSink, browser: Any, width: int
) -> None:
    workers.start()
    key = (await api.department())["api_key"]
    status, follower = await api.call("POST", "/v1/subscribers", key, json=enterprise(2, district="baiyun"))
    assert status == 201
    status, published = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    pid = published["id"]
    context = await browser.new_context(viewport={"width": width, "height": 800 if width < 1000 else 900},
                                        is_mobile=width < 1000, has_touch=width < 1000)
    try:
        tab = Tab(await context.new_page(), api.base, width)
        page = tab.page

        # Which policies apply to me: a small firm in 海珠区.
        await tab.open("/check")
        await tab.seen("check")
        await page.check("#g-enterprise")
        await page.click(".group:has(#g-enterprise) summary")
        await page.select_option("#f-enterprise-district", "haizhu")
        await page.select_option("#f-enterprise-scale", "small")
        await tab.press("button[value=check]")
        assert POLICY["title"] in await page.inner_text(".results")
        assert "海珠区" in await page.inner_text(".results .met")
        await tab.seen("check-answer")

        # Subscribe with that profile: the form comes filled in.
        await tab.press("button[value=subscribe]")
        assert await page.is_checked("#g-enterprise") and await page.is_checked("#d-employment-entrepreneurship")
        assert await page.input_value("#f-enterprise-district") == "haizhu"
        await tab.seen("check-subscribe")
        await page.fill("#f-enterprise-uscc", "91350100M000100Y43")
        await page.select_option("#f-enterprise-industry", "C")
        await page.check("#c-email")
        await page.fill("#f-email", "new.firm@example.com")
        await page.check("#f-agree")
        await tab.press("form.subscription button[type=submit]")
        assert await page.locator(".error").all_inner_texts() == []
        await eventually(lambda: mail_to(sink, "new.firm@example.com"), timeout=20)

        # Follow the policy from its page, with the address the follower subscribed with.
        await tab.open(f"/p/{pid}")
        await tab.seen("policy")
        await tab.press(f"a[href^='/p/{pid}/follow']")
        await tab.seen("follow")
        await page.fill("#f-contact", follower["email"])
        await tab.press("button[value=send]")
        await tab.seen("follow-sent")
        [mail] = await eventually(lambda: mail_to(sink, follower["email"]), timeout=20)
        await tab.open(link_in(mail, "/manage/"))
        await tab.press("a[href*='/following']")
        await tab.seen("following-offer")
        await tab.press("button[value=follow]")
        assert await page.locator("button[value=unfollow]").count() == 1
        await tab.seen("following")
    finally:
        await context.close()

    sink.clear()
    status, _ = await api.call("POST", f"/v1/policies/{pid}/repeal", key, json={"reason": "已被新措施取代"})
    assert status == 202
    [notice] = await eventually(lambda: mail_to(sink, follower["email"]), timeout=30)
    assert "废止" in notice["Subject"]

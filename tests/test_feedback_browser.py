"""A person in a service hall (Chromium at 390 px, and again at 1280) opens a policy page, says it
was useful and asks a question with their e-mail address; the department answers it publicly;
the person sees the answer on the policy page and on their own question's page. Every page passes
the axe-style basics of the self-service browser test and fits the screen; a screenshot of each
is saved. SQLite only: the pages run on both databases in test_feedback.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, screenshot_path
from tests.test_feedback import ASKER, published
from tests.test_self_service_browser import AXE, database_url  # noqa: F401  (SQLite only)

ANSWER = "吸纳1名及以上即可申请，详见第三条。"


async def _checked(page: Any, name: str) -> None:
    assert await page.inner_text("h1"), name
    assert await page.evaluate(AXE) == [], name
    await page.screenshot(path=screenshot_path(f"feedback-{name}"), full_page=True)


@pytest.mark.parametrize("width", [390, 1280])
async def test_rate_ask_and_read_the_public_answer(api: Api, browser: Any, width: int) -> None:
    dept, policy = await published(api)
    pid = policy["id"]
    context = await browser.new_context(viewport={"width": width, "height": 800}, is_mobile=width < 500,
                                        has_touch=width < 500)
    try:
        page = await context.new_page()
        await page.goto(f"{api.base}/p/{pid}")
        await _checked(page, f"policy-{width}")
        async with page.expect_navigation():
            await page.click(f'a[href^="/p/{pid}/feedback?rating=useful"]')
        assert await page.is_checked("#r-useful")
        await _checked(page, f"form-{width}")

        # A contact without a question: the error beside the field, the contact kept.
        await page.fill("#f-contact", ASKER)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert await page.is_visible("#f-contact-error")
        assert await page.input_value("#f-contact") == ASKER and await page.is_checked("#r-useful")
        await _checked(page, f"form-error-{width}")

        await page.fill("#f-question", "小微企业吸纳几名高校毕业生可以申请补贴？")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert "l***@example.com" in await page.content()
        await _checked(page, f"thanks-{width}")
        own = await page.get_attribute('a[href^="/q/"]', "href")
        assert own

        status, listed = await api.call("GET", f"/v1/policies/{pid}/questions", dept["api_key"])
        [item] = listed["items"]
        status, _ = await api.call("POST", f"/v1/questions/{item['id']}/answer", dept["api_key"],
                                   json={"answer": ANSWER, "public": True})
        assert status == 200

        await page.goto(f"{api.base}/p/{pid}")
        assert ANSWER in await page.inner_text(".qa") and ASKER not in await page.content()
        await _checked(page, f"policy-answered-{width}")
        await page.goto(api.base + own)
        assert ANSWER in await page.inner_text("main")
        await _checked(page, f"own-question-{width}")
    finally:
        await context.close()

"""A person at a service hall with a phone (390 px) or at a desk (1280 px) finds a policy in the public
index by a word of its title, narrows by filters, pages through, and opens it; a repealed policy says
so in the list. No script on the pages: the form is a GET. Every page passes the axe-style basics
and fits the screen; a screenshot of each is saved.

SQLite only: the browser adds nothing a second database would notice (test_policy_search.py runs
the same pages on both)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.test_api_foundation import POLICY
from tests.test_policy_search import SOCIAL, TAX, publish
from tests.test_self_service_browser import AXE


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "pushsvc.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def _seen(page: Any, name: str, width: int) -> None:
    assert await page.evaluate(AXE) == [], name
    await page.screenshot(path=screenshot_path(f"policy-index-{name}-{width}"), full_page=True)


async def _submit(page: Any) -> None:
    async with page.expect_navigation():
        await page.click("form.search button[type=submit]")


def _titles(page: Any) -> Any:
    return page.locator("ol.results h2 a").all_inner_texts()


@pytest.mark.parametrize("width", [390, 1280])
async def test_find_a_policy_by_words_and_filters_and_open_it(api: Api, workers: Workers, browser: Any,
                                                               width: int) -> None:
    workers.start()
    hr = await api.department("市人社局", ["employment-entrepreneurship", "social-insurance"])
    tax = await api.department("市税务局", ["tax-administration"])
    jobs = await publish(api, hr["api_key"], POLICY)
    await publish(api, hr["api_key"], SOCIAL)
    vat = await publish(api, tax["api_key"], TAX)
    for i in range(22):  # enough for a second page of in-force policies
        await publish(api, hr["api_key"], {**SOCIAL, "title": f"关于做好第{i + 1}批社保补贴发放工作的通知"})

    async def published() -> bool:
        return (await api.call("GET", f"/v1/policies/{vat}", tax["api_key"]))[1]["status"] == "published"

    await eventually(published)
    status, body = await api.call("POST", f"/v1/policies/{vat}/repeal", tax["api_key"], json={"reason": "政策到期"})
    assert status == 202, body

    mobile = width < 600
    context = await browser.new_context(viewport={"width": width, "height": 844 if mobile else 900},
                                        is_mobile=mobile, has_touch=mobile)
    try:
        page = await context.new_page()
        await page.goto(api.base + "/policies")
        assert (await page.inner_text("h1")).strip()
        assert "2 / 2" in (await page.inner_text("nav.pages")).replace(" ", "") or await page.locator("a[rel=next]").count()
        await _seen(page, "all", width)

        # Next page, then back to the search box: a two-character word of the title.
        async with page.expect_navigation():
            await page.click("a[rel=next]")
        assert await page.locator("ol.results li").count() == 25 - 20
        await _seen(page, "page-2", width)

        await page.fill("#f-q", "稳岗")
        await _submit(page)
        assert await _titles(page) == [POLICY["title"]]
        await _seen(page, "words", width)

        # Filters (folded on a phone: a tap opens them), with words cleared.
        await page.fill("#f-q", "")
        if not await page.locator("details.filters[open]").count():
            await page.click("details.filters summary")
        await page.select_option("#f-district", "nansha")
        await page.select_option("#f-domain", "tax-administration")
        await _submit(page)
        assert await _titles(page) == [TAX["title"]]
        state = await page.inner_text("ol.results .state")
        assert state.strip() and "repealed" in (await page.get_attribute("ol.results .state", "class") or "")
        assert await page.locator("#f-district").input_value() == "nansha"  # the choices are kept
        await _seen(page, "filters", width)

        # A filter that finds nothing says so; the policy opens from the list.
        await page.select_option("#f-domain", "social-insurance")
        await page.select_option("#f-status", "repealed")
        await _submit(page)
        assert await page.locator("ol.results").count() == 0 and await page.locator("p.count").inner_text()
        await page.goto(api.base + "/policies?q=" + "中小微企业")
        async with page.expect_navigation():
            await page.click("ol.results h2 a")
        assert page.url.endswith(f"/p/{jobs}")
        assert (await page.inner_text("h1")).strip() == POLICY["title"]
        await _seen(page, "policy", width)
    finally:
        await context.close()

"""The console's figures over HTTP: a department's page shows the numbers of the report API (the
same report, after real workers sent through the SMTP sink), its CSV is the API's spreadsheet;
the overseer sees every department and the city's totals side by side; nobody else does."""

from __future__ import annotations

import re
from typing import Any

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.console_helpers import ConsoleClient, make_staff, signed_in
from tests.test_api_foundation import POLICY
from tests.test_reports import email, seed

FIGURES = ("policies", "matched", "reached", "sent", "delivered", "failed", "pending")
_FIGURE = re.compile(r'data-figure="(\w+)">([^<]*)<')
_ROW = re.compile(r'<tr data-department="(\w+)"[^>]*>(.*?)</tr>', re.S)


def shown(html: str) -> dict[str, str]:
    return dict(_FIGURE.findall(html))


def expected(total: dict[str, Any]) -> dict[str, str]:
    messages = total["messages"]
    rate = total["reach_rate"]
    return {"policies": str(total["policies"]), "matched": str(total["matched"]), "reached": str(total["reached"]),
            "reach_rate": "–" if rate is None else f"{rate * 100:.1f}%", "sent": str(messages["sent"]),
            "delivered": str(messages["delivered"]), "failed": str(messages["failed"]),
            "pending": str(messages["pending"])}


async def settled_report(api: Api, key: str) -> dict[str, Any] | None:
    status, body = await api.call("GET", "/v1/reports/department", key)
    assert status == 200, body
    ps = body["policies"]
    done = ps and all(p["status"] == "published" and p["messages"]["pending"] == 0 for p in ps)
    return body if done else None


async def person(api: Api, department_id: int | None, role: str) -> ConsoleClient:
    made = await make_staff(api, department_id, role)
    return await signed_in(api, made["username"], made["password"])


async def test_department_figures_and_the_city_view(api: Api, workers: Workers, sink: SmtpSink, browser: Any) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    await seed(api, dept["api_key"], [(i, False, "haizhu") for i in range(6)])
    await seed(api, other["api_key"], [(i, False, "tianhe") for i in range(10, 13)])
    sink.set_faults(reject={email(1)})
    workers.start()
    for key, domain in ((dept["api_key"], POLICY["domain"]), (other["api_key"], "tax-administration")):
        status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, "domain": domain})
        assert status == 202, body
    ours = await eventually(lambda: settled_report(api, dept["api_key"]), timeout=60)
    theirs = await eventually(lambda: settled_report(api, other["api_key"]), timeout=60)
    # Matching is city-wide: each policy reaches both departments' subscribers, one address refused.
    assert ours["total"]["matched"] == theirs["total"]["matched"] == 9
    assert ours["total"]["messages"]["failed"] == theirs["total"]["messages"]["failed"] == 1

    drafter = await person(api, dept["id"], "drafter")
    made = await make_staff(api, None, "overseer")
    overseer = await signed_in(api, made["username"], made["password"])
    try:
        # A department's page: the report API's numbers, its charts, the CSV as the API gives it.
        status, html, _ = await drafter.get("/console/figures")
        assert status == 200 and dept["name"] in html and other["name"] not in html
        assert shown(html) == expected(ours["total"])
        assert html.count("<svg") == 3 and "550 5.1.1" in html
        csv_link = re.search(r'href="(/console/figures\?[^"]+format=csv)"', html)
        assert csv_link
        status, csv_text, headers = await drafter.get(csv_link.group(1).replace("&amp;", "&"))
        assert status == 200 and headers["Content-Type"].startswith("text/csv") and "attachment" in headers["Content-Disposition"]
        _, api_csv = await api.call("GET", "/v1/reports/department?format=csv", dept["api_key"])
        assert csv_text == api_csv
        # Staff see their own department's, whichever they name.
        status, html, _ = await drafter.get(f"/console/figures?department_id={other['id']}")
        assert status == 200 and shown(html) == expected(ours["total"])
        # A bad period: 422, the error beside the field, what was typed kept.
        status, html, _ = await drafter.get("/console/figures?from=2026-02-30")
        assert status == 422 and 'id="from-error"' in html and 'value="2026-02-30"' in html
        # The city view is the overseer's.
        status, _, _ = await drafter.get("/console/figures/city")
        assert status == 403

        # The overseer: any department's page, and every department side by side with the totals.
        status, html, _ = await overseer.get(f"/console/figures?department_id={other['id']}")
        assert status == 200 and shown(html) == expected(theirs["total"])
        status, html, _ = await overseer.get("/console/figures/city")
        assert status == 200
        rows = {key: shown(row) for key, row in _ROW.findall(html)}
        for department, report in ((dept, ours), (other, theirs)):
            timeliness = {k: str(report["total"]["timeliness"][k]) for k in ("on_time", "late")}
            assert rows[str(department["id"])] == {**expected(report["total"]), **timeliness}
        for figure in (*FIGURES, "on_time", "late"):
            assert int(rows["total"][figure]) == int(rows[str(dept["id"])][figure]) + int(rows[str(other["id"])][figure])
        assert rows["total"]["matched"] == "18" and rows["total"]["reach_rate"] == f"{16 / 18 * 100:.1f}%"
        status, html, _ = await overseer.get("/console/figures/city?from=2026-12-02&to=2026-12-01")
        assert status == 422 and 'id="to-error"' in html

        anonymous = ConsoleClient(api)
        for path in ("/console/figures", "/console/figures/city", "/console/figures?format=csv"):
            status, _, headers = await anonymous.get(path)
            assert status == 303 and headers["Location"].startswith("/console/login"), path
        await anonymous.close()
        await looked_at_in_a_browser(api, browser, made)
    finally:
        await drafter.close()
        await overseer.close()


async def looked_at_in_a_browser(api: Api, browser: Any, overseer: dict[str, Any]) -> None:
    """The overseer's figures and city pages in Chromium at 1280 and 390 px: the charts drawn and
    coloured under the CSP, nothing scrolling sideways but the tables in their boxes."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    try:
        await page.goto(f"{api.base}/console/login?next=/console/figures")
        await page.fill("#username", overseer["username"])
        await page.fill("#password", overseer["password"])
        await page.click("main button[type=submit]")
        await page.wait_for_url("**/console/figures")
        charts = page.locator("svg.chart")
        assert await charts.count() == 3
        fill = await page.locator("svg.chart rect.bar").first.evaluate("el => getComputedStyle(el).fill")
        assert fill not in ("rgb(0, 0, 0)", "")
        await page.screenshot(path=str(screenshot_path("console-figures")), full_page=True)
        await page.click('main a[href^="/console/figures/city"]')
        await page.wait_for_url("**/console/figures/city**")
        assert await page.locator("table.city tbody tr").count() == 3
        await page.screenshot(path=str(screenshot_path("console-city")), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=str(screenshot_path("console-city-390")), full_page=True)
        await page.goto(f"{api.base}/console/figures")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=str(screenshot_path("console-figures-390")), full_page=True)
    finally:
        await context.close()
    assert not [c for c in complaints if "Content Security Policy" in c], complaints

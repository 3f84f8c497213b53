"""The console's policies over HTTP: the list (search, filters, pages) for staff and the overseer,
a policy's page with its live progress while a real worker sends through the SMTP sink, its
deliveries masked and audited, and retry-failed with its rights."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pushsvc.console import policy_pages
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.console_helpers import ConsoleClient, make_staff, signed_in
from tests.test_api_foundation import POLICY
from tests.test_reports import email, seed

_ROW_LINK = re.compile(r'href="/console/policies/(\d+)"')


async def publish(api: Api, key: str, **changes: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, **changes})
    assert status == 202 and "id" in body, body
    return body


async def person(api: Api, department_id: int | None, role: str) -> ConsoleClient:
    made = await make_staff(api, department_id, role)
    return await signed_in(api, made["username"], made["password"])


async def listed(client: ConsoleClient, query: str = "") -> list[int]:
    status, html, _ = await client.get(f"/console/policies{query}")
    assert status == 200, html[:800]
    return [int(i) for i in _ROW_LINK.findall(html)]


async def progress(client: ConsoleClient, policy_id: int) -> dict[str, Any]:
    status, text, headers = await client.get(f"/console/policies/{policy_id}/progress")
    assert status == 200 and headers["Content-Type"].startswith("application/json"), text[:300]
    assert headers["Cache-Control"] == "no-store"
    return json.loads(text)


async def audit_actions(api: Api, key: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", "/v1/audit?limit=1000", key)
    assert status == 200, body
    return body["items"]


async def test_the_list_searches_filters_and_pages_within_the_department(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key = dept["api_key"]
    first = await publish(api, key, title="稳岗扩岗补贴", doc_number="穗人社规字〔2026〕3号")
    tax = await publish(api, key, title="小规模纳税人减免", domain="tax-administration", doc_number="穗税发〔2026〕8号")
    later = await publish(api, key, title="创业担保贷款", doc_number=None, publish_at="2099-01-01T09:00:00+08:00")
    theirs = await publish(api, other["api_key"], title="个税专项附加扣除", domain="tax-administration")
    drafter = await person(api, dept["id"], "drafter")
    overseer = await person(api, None, "overseer")
    outsider = await person(api, other["id"], "approver")
    try:
        # Staff see their department's policies, newest first; the titles and numbers are shown.
        status, html, _ = await drafter.get("/console/policies")
        assert status == 200 and "穗人社规字〔2026〕3号" in html and "个税专项附加扣除" not in html
        assert await listed(drafter) == [later["id"], tax["id"], first["id"]]
        assert await listed(outsider) == [theirs["id"]]
        # Search by title or number, filters by status, domain and period.
        assert await listed(drafter, "?q=纳税人") == [tax["id"]]
        assert await listed(drafter, "?q=人社规字") == [first["id"]]
        assert await listed(drafter, "?status=scheduled") == [later["id"]]
        assert await listed(drafter, "?domain=tax-administration") == [tax["id"]]
        assert await listed(drafter, "?from=2098-12-01&to=2099-01-31") == [later["id"]]
        # A department filter is the overseer's: staff stay within their own whatever they ask.
        assert await listed(drafter, f"?department_id={other['id']}") == [later["id"], tax["id"], first["id"]]

        # A bad filter: 422, the error beside its field, what was typed kept.
        status, html, _ = await drafter.get("/console/policies?from=2026-13-01&q=稳岗")
        assert status == 422
        assert 'id="from"' in html and 'aria-invalid="true" aria-describedby="from-error"' in html
        assert 'id="from-error"' in html and 'value="2026-13-01"' in html and 'value="稳岗"' in html

        # The overseer reads every department's, or one department's.
        assert await listed(overseer) == [theirs["id"], later["id"], tax["id"], first["id"]]
        assert await listed(overseer, f"?department_id={other['id']}") == [theirs["id"]]
        status, html, _ = await overseer.get("/console/policies?department_id=999")
        assert status == 422 and 'id="department_id-error"' in html

        # A page at a time.
        monkeypatch.setattr(policy_pages, "PAGE_SIZE", 2)
        status, html, _ = await drafter.get("/console/policies")
        assert [int(i) for i in _ROW_LINK.findall(html)] == [later["id"], tax["id"]]
        older = re.search(r'href="(/console/policies\?cursor=[^"]+)" rel="next"', html)
        assert older, html
        status, html, _ = await drafter.get(older.group(1).replace("&amp;", "&"))
        assert [int(i) for i in _ROW_LINK.findall(html)] == [first["id"]] and 'rel="next"' not in html

        # Signed out: to the sign-in form, coming back after.
        anonymous = ConsoleClient(api)
        status, _, headers = await anonymous.get("/console/policies?q=x")
        assert status == 303 and headers["Location"].startswith("/console/login?next=")
        status, _, headers = await anonymous.get(f"/console/policies/{first['id']}/progress")
        assert status == 303
        await anonymous.close()
    finally:
        for client in (drafter, overseer, outsider):
            await client.close()


async def test_the_policy_page_for_staff_the_overseer_and_another_department(api: Api) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    policy = await publish(api, dept["api_key"])
    drafter = await person(api, dept["id"], "drafter")
    overseer = await person(api, None, "overseer")
    outsider = await person(api, other["id"], "department_admin")
    try:
        drafter.cookies["pushsvc_console_lang"] = "zh-CN"
        status, html, _ = await drafter.get(f"/console/policies/{policy['id']}")
        assert status == 200 and POLICY["title"] in html and POLICY["doc_number"] in html
        # Targeting in words, from the catalogue's labels.
        assert "海珠区" in html and "天河区" in html
        drafter.cookies["pushsvc_console_lang"] = "en"
        # Live progress: the script's endpoint, and without script a refresh while the fan-out runs
        # (no worker here: it is still publishing).
        assert f'data-progress-url="/console/policies/{policy["id"]}/progress"' in html
        assert '<noscript><meta http-equiv="refresh"' in html and "/console/static/progress.js" in html
        # One click to the public page and poster; revise and repeal go through review.
        assert f"https://push.example.gov.cn/p/{policy['id']}/poster" in html
        assert f"/console/drafts/new?kind=revise&amp;policy={policy['id']}" in html
        body = await progress(drafter, policy["id"])
        assert body["status"] == "publishing" and body["running"] is True
        assert set(body["deliveries"]) == {"email"} and body["deliveries"]["email"]["queued"] == 0

        # The overseer reads it, with no action offered.
        status, html, _ = await overseer.get(f"/console/policies/{policy['id']}")
        assert status == 200 and POLICY["title"] in html
        assert "kind=revise" not in html and "kind=repeal" not in html and "retry-failed" not in html

        # Another department: no such policy, page or progress.
        for path in (f"/console/policies/{policy['id']}", f"/console/policies/{policy['id']}/progress",
                     "/console/policies/999999", "/console/policies/abc"):
            status, html, _ = await outsider.get(path)
            assert status == 404 and POLICY["title"] not in html, path

        # The script is served by the app, under the CSP's script-src 'self'.
        status, script, headers = await drafter.get("/console/static/progress.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript") and "data-progress-url" in script
    finally:
        for client in (drafter, overseer, outsider):
            await client.close()


async def test_progress_moves_while_a_worker_sends(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, [(i, False, "haizhu") for i in range(12)])
    drafter = await person(api, dept["id"], "drafter")
    try:
        sink.set_delay(0.2)  # a slow relay, so the messages are seen on their way
        policy = await publish(api, key)
        before = await progress(drafter, policy["id"])
        assert before["running"] and before["deliveries"]["email"]["sent"] == 0
        workers.start()
        seen: set[str] = set()

        async def finished() -> dict[str, Any] | None:
            body = await progress(drafter, policy["id"])
            seen.update(s for s, n in body["deliveries"]["email"].items() if n)
            return None if body["running"] else body

        done = await eventually(finished, timeout=60, interval=0.1)
        assert done["status"] == "published" and done["matched"] == 12
        assert done["deliveries"]["email"]["sent"] == 12 and done["deliveries"]["email"]["queued"] == 0
        assert seen & {"queued", "sending"}, seen  # the counts moved through the way, not only to the end
        assert len(sink.messages()) == 12

        # Finished: no more refreshing, and the deliveries are listed with masked contacts.
        status, html, _ = await drafter.get(f"/console/policies/{policy['id']}")
        assert status == 200 and 'http-equiv="refresh"' not in html and 'data-running="false"' in html
        assert "u***@example.com" in html and email(3) not in html
    finally:
        await drafter.close()


async def test_failures_their_reasons_and_retry_failed(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key = dept["api_key"]
    await seed(api, key, [(i, False, "haizhu") for i in range(5)])
    sink.set_faults(temp_fail_for=600, reject={email(2)})
    workers.start(PUSHSVC_MAX_ATTEMPTS="2")
    policy = await publish(api, key)
    drafter = await person(api, dept["id"], "drafter")
    overseer = await person(api, None, "overseer")
    outsider = await person(api, other["id"], "drafter")
    path = f"/console/policies/{policy['id']}"
    try:
        async def all_failed() -> bool:
            body = await progress(drafter, policy["id"])
            return not body["running"] and body["deliveries"]["email"]["failed"] == 5

        await eventually(all_failed, timeout=60)
        # The failures with their reasons, filtered; contacts masked; the read is audited.
        status, html, _ = await drafter.get(f"{path}?status=failed&channel=email")
        assert status == 200 and html.count('class="failed"') == 5
        assert "gave up: 451 4.3.0" in html and "550 5.1.1" in html and email(2) not in html
        assert 'action="/console/policies/%d/retry-failed"' % policy["id"] in html
        status, html, _ = await drafter.get(f"{path}?status=lost")
        assert status == 422 and 'id="d-status-error"' in html
        reads = [e for e in await audit_actions(api, key) if e["action"] == "deliveries.read"]
        assert reads and reads[-1]["actor"].startswith(f"department:{dept['id']}:staff:")
        assert {e["subscriber_id"] for e in reads} >= set(range(1, 6)) - {None}

        # Nobody else may retry: the overseer (reads only) and another department (no such policy).
        status, _, _ = await overseer.request("POST", f"{path}/retry-failed", data={"csrf_token": "x"})
        assert status == 403
        status, _, _ = await outsider.request("POST", f"{path}/retry-failed", data={"csrf_token": "x"})
        assert status == 404
        # Without the form's token: refused, nothing queued.
        status, _, _ = await drafter.request("POST", f"{path}/retry-failed", data={"csrf_token": "forged"})
        assert status == 403
        assert (await progress(drafter, policy["id"]))["deliveries"]["email"]["failed"] == 5

        # The relay accepts mail again: retrying sends the four temporary failures, not the refused one.
        sink.set_faults(reject={email(2)})
        status, _, headers = await drafter.post(f"{path}/retry-failed", {}, page=path)
        assert status == 303 and headers["Location"] == f"{path}?retried=4"
        status, html, _ = await drafter.follow(headers["Location"])
        assert status == 200 and "4" in html and 'role="status"' in html
        await eventually(lambda: len(sink.messages()) >= 4, timeout=30)

        async def settled() -> dict[str, Any] | None:
            body = await progress(drafter, policy["id"])
            return None if body["running"] else body

        final = await eventually(settled, timeout=30)
        assert final["deliveries"]["email"]["sent"] == 4 and final["deliveries"]["email"]["failed"] == 1
        assert sorted(r for m in sink.messages() for r in m.rcpt_tos) == sorted(email(i) for i in range(5) if i != 2)
        retried = [e for e in await audit_actions(api, key) if e["action"] == "policy.retry_failed"]
        assert len(retried) == 1 and retried[0]["actor"].startswith(f"department:{dept['id']}:staff:")
    finally:
        for client in (drafter, overseer, outsider):
            await client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser adds nothing a second database would notice
async def test_live_progress_in_a_browser(api: Api, workers: Workers, sink: SmtpSink, browser: Any) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, [(i, False, "haizhu") for i in range(12)])
    made = await make_staff(api, dept["id"], "drafter")
    sink.set_delay(0.3)
    policy = await publish(api, key)
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    try:
        await page.goto(f"{api.base}/console/login?next=/console/policies/{policy['id']}")
        await page.fill("#username", made["username"])
        await page.fill("#password", made["password"])
        await page.click("main button[type=submit]")
        await page.wait_for_url(f"**/console/policies/{policy['id']}")
        assert await page.locator("[data-progress-url]").get_attribute("data-running") == "true"
        sent = page.locator('[data-count="email:sent"]')
        assert await sent.text_content() == "0"

        # The worker starts: the script writes the counts into the table as they move, then reloads once.
        workers.start()
        moving = page.locator('[data-count="email:queued"], [data-count="email:sending"]')
        await page.wait_for_function(
            "() => [...document.querySelectorAll('[data-count^=\"email:\"]')].some("
            "td => !td.dataset.count.endsWith(':sent') && td.textContent !== '0')", timeout=30_000)
        assert await moving.count() == 2
        await page.wait_for_function(
            "() => document.querySelector('[data-progress-url]').dataset.running === 'false'", timeout=60_000)
        assert await sent.text_content() == "12"
        assert await page.locator("table tbody tr").count() >= 12
        await page.screenshot(path=str(screenshot_path("console-policy")), full_page=True)

        # At 390 px the page does not scroll sideways (wide tables scroll in their boxes).
        await page.set_viewport_size({"width": 390, "height": 844})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=str(screenshot_path("console-policy-390")), full_page=True)
        await page.goto(f"{api.base}/console/policies")
        assert await page.locator(f'a[href="/console/policies/{policy["id"]}"]').count() == 1
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=str(screenshot_path("console-policies-390")), full_page=True)
    finally:
        await context.close()
    assert not [c for c in complaints if "Content Security Policy" in c], complaints

"""The console's whole path in a browser (issue 15, item 8), Debian's Chromium driven by Playwright:
a drafter signs in with the keyboard, composes a policy targeted by two conditions with the builder
and watches the reach change as she types, reads the e-mail and SMS as recipients will, sends
herself a test, and submits; an approver returns it once with a comment, then approves it; the
subscribers get it in the SMTP sink and the SMS stand-in (real workers); one address the relay
refuses for good and one it turned away for now show on the policy page with their reasons, the
drafter retries the failure and revises the policy through the same review, and the recipients get
the revision notice; the overseer finds it in the city's figures.

Every page is checked at 1280 and 390 pixels wide with the axe-style basics of the self-service
browser test (labels, names, no positive tabindex, nothing wider than the screen) and saved as
test-artifacts/screenshots/console-path-<page>-<width>.png.

SQLite only, like the other browser tests: each action is also tested over HTTP on both databases
in tests/test_console_*.py.
"""

from __future__ import annotations

import re
from typing import Any

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.console_helpers import make_staff
from tests.test_api_foundation import enterprise
from tests.test_self_service import mail_to, sms_sent
from tests.test_self_service_browser import AXE, Phone, database_url  # noqa: F401  (SQLite only)
from tests.test_sms import gateway, settings_env  # noqa: F401  (the SMS stand-in, its secret, no quiet hours)

WIDTHS = (1280, 390)
TITLE = "关于支持中小微企业稳岗扩岗的若干措施"
COMMENT = "请补充政策解读链接"
CLERK_EMAIL, CLERK_PHONE = "clerk@example.gov.cn", "+8613900139000"
# Subscribers of the department: (n, district, scale, channels). The rule (haizhu or tianhe, small
# or micro) matches 1, 2, 3, 6 and 7; 4 and 5 fail one condition each. 6's mailbox is refused for good.
PEOPLE = ((1, "haizhu", "small", ["email", "sms"]), (2, "tianhe", "micro", ["email"]), (3, "haizhu", "small", ["sms"]),
          (4, "baiyun", "small", ["email"]), (5, "haizhu", "large", ["email"]), (6, "haizhu", "small", ["email"]),
          (7, "tianhe", "small", ["email"]))
REFUSED = enterprise(6)["email"]
MAILED = [enterprise(n)["email"] for n in (1, 2, 7)]
TEXTED = ["13800018000", "13800038000"]  # 1 and 3, as the gateway gets them


class Desk(Phone):
    """One person's browser tab; every page seen is checked and photographed at both widths."""

    async def seen(self, name: str, text: str = "") -> None:
        """The page shows `text`, passes the axe-style checks and fits at 1280 and 390 px."""
        assert text in await self.page.inner_text("main"), name
        for width in WIDTHS:
            await self.page.set_viewport_size({"width": width, "height": 900})
            assert await self.page.evaluate(AXE) == [], (name, width)
            await self.page.screenshot(path=screenshot_path(f"console-path-{name}-{width}"), full_page=True)
        await self.page.set_viewport_size({"width": WIDTHS[0], "height": 900})
        # Back at the top, the layout settled: after the resizes, Chromium moved the page between a
        # click's press and release (the release landed on another button), unlike a person's window.
        await self.page.evaluate("() => new Promise(r => { scrollTo(0, 0); requestAnimationFrame(() => requestAnimationFrame(r)); })")

    async def sign_in(self, username: str, password: str) -> None:
        await self.open("/console/login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        await self.press("main button[type=submit]")

    async def progress(self, policy_id: int) -> dict[str, Any]:
        """The policy page's own JSON, with this person's session."""
        response = await self.page.request.get(f"{self.base}/console/policies/{policy_id}/progress")
        assert response.ok, response.status
        return await response.json()


async def _people(api: Api) -> tuple[dict[str, Any], ...]:
    dept = await api.department()
    for n, district, scale, channels in PEOPLE:
        status, body = await api.call("POST", "/v1/subscribers", dept["api_key"],
                                      json=enterprise(n, district=district, scale=scale, channels=channels))
        assert status == 201, body
    drafter = await make_staff(api, dept["id"], "drafter", display_name="李文书", email=CLERK_EMAIL, phone=CLERK_PHONE)
    approver = await make_staff(api, dept["id"], "approver", display_name="王科长")
    overseer = await make_staff(api, None, "overseer", display_name="陈督查")
    return dept, drafter, approver, overseer


async def _keyboard_sign_in(desk: Desk, username: str, password: str) -> None:
    """From the top of the page: the first Tab reaches the skip link; Tab on to the username field,
    type, Tab, type, Enter."""
    page = desk.page
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.getAttribute('href')") == "#main"
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "username":
            break
    else:
        raise AssertionError("the username field is not reached with Tab")
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "password"
    await page.keyboard.type(password)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")


def _texts_to(messages: list[dict[str, Any]], national: str) -> list[str]:
    return [m["text"] for m in messages if national in m["numbers"]]


async def test_a_policy_from_draft_to_review_recipients_retry_revision_and_city_figures(
    api: Api, workers: Workers, gateway: SmsGatewayStub, sink: SmtpSink, browser: Any  # noqa: F811  (the fixture)
) -> None:
    dept, drafter, approver, overseer = await _people(api)
    # One attempt each: the address the relay turns away for now fails at once, for retry-failed.
    workers.start(PUSHSVC_SMS_URL=gateway.url, PUSHSVC_MAX_ATTEMPTS="1")
    contexts = [await browser.new_context(viewport={"width": WIDTHS[0], "height": 900}, locale="zh-CN")
                for _ in range(3)]
    complaints: list[str] = []
    for context in contexts:
        context.set_default_timeout(20_000)
    try:
        clerk, boss, city = [Desk(await c.new_page(), api.base) for c in contexts]
        for desk in (clerk, boss, city):
            desk.page.on("console", lambda message: complaints.append(message.text))
            desk.page.on("dialog", lambda dialog: dialog.accept())  # console.js asks before a retry

        # -- The drafter: signed in with the keyboard alone. ----------------------------------------
        await clerk.open("/console")
        assert clerk.page.url.endswith("/console/login")
        await clerk.seen("login")
        await _keyboard_sign_in(clerk, drafter["username"], drafter["password"])
        await clerk.seen("home", "李文书")

        # -- Composing with the builder (JavaScript on): two conditions, the second row added in place.
        await clerk.open("/console/drafts")
        await clerk.seen("drafts")
        await clerk.press("main a[href='/console/drafts/new']")
        page = clerk.page
        await page.fill("#f-title", TITLE)
        await page.fill("#f-doc_number", "穗人社规字〔2026〕3号")
        await page.fill("#f-summary", "对吸纳就业的小微企业给予补贴。")
        await page.fill("#f-url", "https://example.gov.cn/policy/123")
        await page.select_option("#f-domain", "employment-entrepreneurship")
        await page.check("input[name='channel.email']")
        await page.check("input[name='channel.sms']")
        await page.check("input[name='audience.enterprise']")
        await page.select_option("#f-combinator", "all")
        await page.select_option("#f-clause-0-attr", "enterprise.district")
        await page.select_option("#f-clause-0-op", "in")
        await page.fill("#f-clause-0-value", "haizhu")
        url_before = page.url
        await page.click("#add-clause")
        assert page.url == url_before  # added by the script, no round trip
        await page.select_option("#f-clause-1-attr", "enterprise.scale")
        await page.select_option("#f-clause-1-op", "in")
        await page.fill("#f-clause-1-value", "small, micro")
        await clerk.seen("compose-new")
        await clerk.press(".actions button[value=save]")
        found = re.search(r"/console/drafts/(\d+)$", page.url)
        assert found, page.url
        draft_id = int(found.group(1))
        draft_path = f"/console/drafts/{draft_id}"

        # The reach as saved: both conditions (haizhu alone would also take 5, scale large) give 1, 3
        # and 6; then as she types, haizhu or tianhe: 1, 2, 3, 6 and 7.
        reach = page.locator("#reach .reach-total")
        assert re.search(r"\b3\b", await reach.inner_text()), await reach.inner_text()
        await page.fill("#f-clause-0-value", "haizhu, tianhe")
        await page.wait_for_function(
            "() => /\\b5\\b/.test(document.querySelector('#reach .reach-total')?.textContent || '')", timeout=10_000)
        by_audience, by_channel = [await t.locator("td").all_inner_texts()
                                   for t in await page.locator("#reach .reach-tables table").all()]
        assert by_audience == ["5"] and sorted(by_channel) == ["2", "4"], (by_audience, by_channel)  # SMS 2, e-mail 4
        await clerk.press(".actions button[value=save]")
        assert re.search(r"\b5\b", await page.locator("#reach .reach-total").inner_text())

        # As recipients will see it: the e-mail in a sandboxed frame, the SMS text and its count.
        frame = page.locator("iframe.email-frame").first
        assert await frame.get_attribute("sandbox") == ""
        assert TITLE in await page.frame_locator("iframe.email-frame").first.locator("body").inner_text()
        # Its own picture: Chromium does not paint a sandboxed (cross-origin) frame off screen, so the
        # full-page screenshots show it empty.
        await frame.screenshot(path=screenshot_path("console-path-draft-email"))
        sms = page.locator(".rendering p.sms").first
        assert TITLE in await sms.inner_text()
        count = await sms.locator("xpath=following-sibling::p[1]").inner_text()
        assert re.search(r"\d+\D+\d+", count), count
        assert TITLE in await page.inner_text("h1")  # a saved draft is named by its title
        await clerk.seen("draft", TITLE)

        # A test to herself: in the sink and the stand-in, marked as a test, to her alone.
        await clerk.press("form[action$='/test-send'] button")
        assert "sent=yes" in page.url
        [test_mail] = await eventually(lambda: mail_to(sink, CLERK_EMAIL), timeout=30)
        assert "[测试]" in str(test_mail["Subject"]) and TITLE in str(test_mail["Subject"])
        [test_text] = await eventually(lambda: _texts(api, gateway, CLERK_PHONE[3:]), timeout=30)
        assert "[测试]" in test_text
        assert [m.rcpt_tos for m in sink.messages()] == [(CLERK_EMAIL,)]
        await clerk.seen("draft-test-sent", TITLE)

        await clerk.press(".actions button[value=submit]")
        await clerk.seen("draft-submitted", TITLE)
        assert not await page.locator("#compose").count()  # no longer editable while it is reviewed

        # -- The approver: it awaits review; returned once with a comment. -------------------------
        await boss.sign_in(approver["username"], approver["password"])
        await boss.open("/console/review")
        await boss.seen("review-list")
        await boss.press(f"a[href='{draft_path}/review']")
        assert re.search(r"\b5\b", await boss.page.inner_text("#reach .reach-total"))
        await boss.seen("review", TITLE)
        await boss.page.fill("#f-comment", COMMENT)
        await boss.press(f"form[action='{draft_path}/return'] button")

        # -- The drafter reads the comment, adds the link, submits again. --------------------------
        await clerk.open(draft_path)
        assert COMMENT in await page.inner_text("main .comment")
        await clerk.seen("draft-returned", TITLE)
        await page.fill("#f-interpretation_url", "https://example.gov.cn/jd/123")
        await clerk.press(".actions button[value=submit]")

        # -- Approved and published, through the API's code; the relay refuses one and defers one. --
        # The third good mailbox is turned away for now (the sink fails the k-th when k * rate steps up).
        sink.set_faults(reject={REFUSED}, temp_fail_rate=0.34)
        await boss.open(f"{draft_path}/review")
        assert "https://example.gov.cn/jd/123" in await boss.page.inner_text("main")
        await boss.seen("review-again", TITLE)
        await boss.press(f"form[action='{draft_path}/approve'] button")
        await boss.open(draft_path)
        link = boss.page.locator("main a[href^='/console/policies/']")
        policy_id = int((await link.first.get_attribute("href") or "").rsplit("/", 1)[1])
        policy_path = f"/console/policies/{policy_id}"

        # -- The recipients: both phones, two of the three good mailboxes; the failures with reasons.
        async def settled() -> dict[str, Any] | None:
            body = await clerk.progress(policy_id)
            return None if body["running"] or body["deliveries"].get("email", {}).get("failed") != 2 else body

        final = await eventually(settled, timeout=60)
        assert sum(final["deliveries"]["sms"].get(s, 0) for s in ("sent", "delivered")) == 2, final
        texts = await sms_sent(api, gateway)
        for national in TEXTED:
            [text] = _texts_to(texts, national)
            assert TITLE in text and "[测试]" not in text
        got = [a for a in MAILED if mail_to(sink, a)]
        assert len(got) == 2, got
        assert all(TITLE in str(mail_to(sink, a)[0]["Subject"]) for a in got)
        await clerk.open(f"{policy_path}?status=failed")
        failed = await page.inner_text("section[aria-labelledby=deliveries] table")
        assert await page.locator("tr.failed").count() == 2
        assert "550 5.1.1" in failed and "451 4.3.0" in failed and REFUSED not in failed, failed
        await clerk.seen("policy-failures", TITLE)

        # The relay takes mail again: retry-failed sends the deferred one; the refused stays failed.
        sink.set_faults(reject={REFUSED})
        await clerk.open(policy_path)
        await clerk.press(f"form[action='{policy_path}/retry-failed'] button")
        assert "retried=1" in page.url
        assert "1" in await page.inner_text("main p.notice")
        await clerk.seen("policy-retried", TITLE)
        await eventually(lambda: all(mail_to(sink, a) for a in MAILED), timeout=30)
        assert mail_to(sink, REFUSED) == []

        async def retried() -> dict[str, Any] | None:
            body = await clerk.progress(policy_id)
            email = body["deliveries"]["email"]
            return body if not body["running"] and email.get("failed") == 1 else None

        await eventually(retried, timeout=30)

        # -- The revision: Revise, the revise draft, submitted; the approver approves. -------------
        await clerk.press(f"a[href='/console/drafts/new?kind=revise&policy={policy_id}']")
        await clerk.seen("revise-new", TITLE)
        await page.fill("#f-title", TITLE + "（修订）")
        await clerk.press(".actions button[value=save]")
        found = re.search(r"/console/drafts/(\d+)$", page.url)
        assert found, page.url
        revise_path = f"/console/drafts/{found.group(1)}"
        await clerk.seen("revise-draft", TITLE)
        await clerk.press(".actions button[value=submit]")
        before = {a: len(mail_to(sink, a)) for a in MAILED}
        await boss.open("/console/review")
        await boss.press(f"a[href='{revise_path}/review']")
        await boss.seen("review-revision")
        await boss.press(f"form[action='{revise_path}/approve'] button")

        # The recipients of the policy get the revision notice, by e-mail and by SMS.
        await eventually(lambda: all(len(mail_to(sink, a)) > before[a] for a in MAILED), timeout=60)

        async def noticed_by_sms() -> bool:
            texts = await sms_sent(api, gateway)
            return all(len(_texts_to(texts, national)) == 2 for national in TEXTED)

        await eventually(noticed_by_sms, timeout=30)
        for address in MAILED:
            notice = mail_to(sink, address)[-1]
            assert "修订" in notice.get_body(preferencelist=("plain",)).get_content(), address
        await clerk.open(policy_path)
        assert TITLE + "（修订）" in await page.inner_text("h1")
        await clerk.seen("policy-revised", TITLE)

        # -- The overseer: the city's figures count it; the department's figures list it. --------
        await city.sign_in(overseer["username"], overseer["password"])
        assert city.page.url.endswith("/console/figures/city")  # the overseer's home
        row = city.page.locator(f"tr[data-department='{dept['id']}']")
        assert await row.locator("[data-figure=policies]").inner_text() == "1"
        assert await city.page.locator("tr[data-department=total] [data-figure=policies]").inner_text() == "1"
        await city.seen("city")
        await city.press(f"tr[data-department='{dept['id']}'] a")
        assert await city.page.locator(f"a[href='{policy_path}']").count() >= 1
        await city.seen("figures")
        await city.open(policy_path)
        assert not await city.page.locator("form[action$='/retry-failed'], a[href*='kind=revise']").count()
        await city.seen("overseer-policy", TITLE)
    finally:
        for context in contexts:
            await context.close()
    assert not [c for c in complaints if "Content Security Policy" in c], complaints


async def _texts(api: Api, gw: SmsGatewayStub, national: str) -> list[str]:
    return _texts_to(await sms_sent(api, gw), national)

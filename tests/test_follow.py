"""Following a policy from its page, as a person without JavaScript does it: the contact they
subscribed with gets a manage link (an address) or a code (a phone), and following makes them hear
of the policy's repeal once, whether or not the policy reached them. Real servers: the API, worker
processes, the SMTP sink and the SMS stand-in; on every test database."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import sqlalchemy as sa
from multidict import CIMultiDictProxy

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.store.schema import policy_follows
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY, enterprise
from tests.test_lifecycle import wait
from tests.test_self_service import Visitor, axe_problems, codes_to, db_rows, error_beside, link_in, mail_to, sms_sent
from tests.test_sms import gateway, settings_env  # noqa: F401  (the SMS stub, no quiet hours)

BOTH = {**POLICY, "channels": ["email", "sms"]}


class Browser(Visitor):
    """A Visitor that keeps every cookie the pages set (the follow page's waiting policy too)."""

    def __init__(self, api: Api) -> None:
        super().__init__(api)
        self.cookies: dict[str, str] = {}

    async def open(self, method: str, path: str, fields: dict[str, Any] | list[tuple[str, str]] | None = None,
                   **headers: str) -> tuple[int, str, CIMultiDictProxy[str]]:
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        async with self.api.session.request(method, self.api.base + path, data=fields, headers=headers,
                                            allow_redirects=False) as resp:
            for name, morsel in resp.cookies.items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
            self.html, self.headers = await resp.text(), resp.headers
            return resp.status, self.html, resp.headers


async def followers(env: dict[str, str], policy_id: int) -> set[int]:
    F = policy_follows.c
    return {r.subscriber_id for r in await db_rows(env, sa.select(F.subscriber_id).where(F.policy_id == policy_id))}


async def follow_by_email(api: Api, sink: SmtpSink, policy_id: int, address: str) -> tuple[Browser, str]:
    """Follow from the policy's page with an address: (the browser, its following page)."""
    person = Browser(api)
    status, html = await person.get(f"/p/{policy_id}")
    assert status == 200 and f'href="/p/{policy_id}/follow?lang=zh-CN"' in html
    status, html = await person.get(f"/p/{policy_id}/follow")
    assert status == 200 and axe_problems(html) == []
    sink.clear()
    status, html = await person.submit(f"/p/{policy_id}/follow", {"contact": address, "action": "send"})
    assert status == 200 and 'class="notice" role="status"' in html
    [mail] = await eventually(lambda: mail_to(sink, address), timeout=20)
    manage = link_in(mail, "/manage/")
    status, html = await person.get(manage)
    assert status == 200 and f'href="{manage}/following?lang=' in html
    following = f"{manage}/following"
    status, html = await person.get(following)
    assert status == 200 and axe_problems(html) == [] and f'name="policy" value="{policy_id}"' in html
    status, html = await person.submit(following, {"policy": str(policy_id), "action": "follow"})
    assert status == 200 and f'href="/p/{policy_id}"' in html and 'value="unfollow"' in html
    return person, following


async def test_a_follower_hears_of_the_repeal_once_and_a_recipient_who_follows_too_once(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, str]  # noqa: F811
) -> None:
    key = (await api.department())["api_key"]
    status, recipient = await api.call("POST", "/v1/subscribers", key, json=enterprise(1))
    assert status == 201
    # In 白云区: the policy is not for them, but they follow it.
    status, outsider = await api.call("POST", "/v1/subscribers", key, json=enterprise(2, district="baiyun"))
    assert status == 201
    workers.start()
    status, published = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    pid = published["id"]
    await wait(api, key, pid, {"email": 1})

    await follow_by_email(api, sink, pid, recipient["email"])
    outsider_browser, outsider_page = await follow_by_email(api, sink, pid, outsider["email"])
    # Following twice is following once.
    status, html = await outsider_browser.submit(outsider_page, {"policy": str(pid), "action": "follow"})
    assert status == 200
    assert await followers(settings_env, pid) == {recipient["id"], outsider["id"]}

    sink.clear()
    status, _ = await api.call("POST", f"/v1/policies/{pid}/repeal", key, json={"reason": "已被新措施取代"})
    assert status == 202
    await wait(api, key, pid, {"email": 2}, notice=1)
    for person in (recipient, outsider):
        [notice] = await eventually(lambda p=person: mail_to(sink, p["email"]), timeout=20)  # type: ignore[misc]
        assert "废止" in notice["Subject"]
    await workers_idle()
    assert len(mail_to(sink, recipient["email"])) == 1 and len(mail_to(sink, outsider["email"])) == 1

    # A repealed policy is not followed any more; unfollowing from the manage pages works.
    status, html = await outsider_browser.get(f"/p/{pid}/follow")
    assert status == 200 and 'name="contact"' not in html
    status, html = await outsider_browser.get(outsider_page)
    status, html = await outsider_browser.submit(outsider_page, {"policy": str(pid), "action": "unfollow"})
    assert status == 200 and await followers(settings_env, pid) == {recipient["id"]}


async def workers_idle() -> None:
    """Long enough for a second, wrong message to have arrived (deliver jobs poll every 0.5 s)."""
    await asyncio.sleep(2)


async def test_a_phone_follows_with_its_code_and_bad_input_is_refused(
    api: Api, workers: Workers, gateway: SmsGatewayStub, settings_env: dict[str, str]  # noqa: F811
) -> None:
    key = (await api.department())["api_key"]
    status, person = await api.call("POST", "/v1/subscribers", key,
                                     json=enterprise(3, channels=["email", "sms"]))
    assert status == 201
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, published = await api.call("POST", "/v1/policies", key, json=BOTH)
    pid = published["id"]
    path = f"/p/{pid}/follow"

    browser = Browser(api)
    await browser.get(path)
    status, html = await browser.submit(path, {"contact": "not a contact", "action": "send"})
    assert status == 422 and error_beside(html, "f-contact") and 'value="not a contact"' in html
    status, html, _ = await browser.open("POST", path, {"contact": person["phone"], "action": "send",
                                                        "csrf_token": "forged", "lang": "zh-CN"})
    assert status == 403
    await browser.get(path)
    status, html = await browser.submit(path, {"contact": person["phone"], "action": "send"})
    assert status == 200
    national = re.sub(r"\D", "", person["phone"])[-11:]
    [text] = await eventually(lambda: _codes(api, gateway, national), timeout=20)
    code = re.search(r"(?<!\d)(\d{6})(?!\d)", text)
    assert code
    status, html = await browser.submit(path, {"phone": person["phone"], "code": "000000", "action": "enter"})
    assert status == 422 and error_beside(html, "f-code")
    status, html = await browser.submit(path, {"phone": person["phone"], "code": code[1], "action": "enter"})
    assert status == 303 and re.fullmatch(r"/manage/[^/]+/following\?lang=zh-CN", browser.headers["Location"])  # type: ignore[index]
    assert await followers(settings_env, pid) == {person["id"]}
    following = browser.headers["Location"]  # type: ignore[index]
    status, html = await browser.get(following)
    assert status == 200 and published["title"] in html

    # What they follow is theirs: in their data.json, and gone with their record when they erase it.
    manage = following.split("/following")[0]
    status, body, _ = await browser.open("GET", f"{manage}/data.json")
    assert status == 200 and [f["policy_id"] for f in json.loads(body)["following"]] == [pid]
    await browser.get(manage)
    status, _ = await browser.submit(manage, {"action": "erase", "erase_confirm": "yes"})
    assert status == 200 and await followers(settings_env, pid) == set()

    # Nobody follows what is not public, nor through a link that is not theirs.
    assert (await Browser(api).get("/p/999999/follow"))[0] == 404
    assert (await Browser(api).get("/manage/forged/following"))[0] == 400


async def _codes(api: Api, gw: SmsGatewayStub, national: str) -> list[str]:
    """The manage codes sent to the number (the policy itself went to it too)."""
    return [text for text in codes_to(await sms_sent(api, gw), national) if "验证码" in text]

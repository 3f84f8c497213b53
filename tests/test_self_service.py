"""The self-service pages as a person without JavaScript uses them: the subscribe form from a QR
link, errors beside their fields, CSRF, the SMS code and its limits, the e-mailed links, the
manage page (same answer for known and unknown contacts), their data and its deletion, and
links that are expired or tampered with. Real servers: the API, worker processes, the SMTP sink,
the SMS stand-in; on every test database."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.app import build_app
from pushsvc.channels.email import EmailChannel
from pushsvc.channels.sms import SmsChannel
from pushsvc.core.clock import now
from pushsvc.core.messages import ManageLinkMessage
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner
from pushsvc.core.verification import CONFIRM_TTL, ContactKeys, confirm_token, manage_token
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.http.access_log import masked_path
from pushsvc.settings import REPO_ROOT, Settings
from pushsvc.store.db import Database
from pushsvc.store.schema import consents, deliveries, subscriber_channels, subscribers
from pushsvc.store.self_service import purge_unconfirmed
from tests.conftest import SECRET, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_sms import SMS_SECRET, gateway, settings_env  # noqa: F401  (the SMS stub, no quiet hours)

QR_QUERY = "?audience=enterprise&domain=employment-entrepreneurship"
ENTERPRISE = {"group": "enterprise", "enterprise.uscc": "91350100M000100Y43", "enterprise.district": "haizhu",
              "enterprise.industry": "C", "enterprise.scale": "small"}
PHONE, NATIONAL = "+8613800138000", "13800138000"
EMAIL = "zhang.san@example.com"


class Visitor:
    """One person's browser without JavaScript: it keeps the cookie the pages set and posts their
    forms with the hidden fields the page gave (the CSRF token, the language)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.cookie: str | None = None
        self.html = ""
        self.headers: CIMultiDictProxy[str] | None = None

    async def open(self, method: str, path: str, fields: dict[str, Any] | list[tuple[str, str]] | None = None,
                   **headers: str) -> tuple[int, str, CIMultiDictProxy[str]]:
        if self.cookie:
            headers["Cookie"] = f"pushsvc_csrf={self.cookie}"
        async with self.api.session.request(method, self.api.base + path, data=fields, headers=headers,
                                            allow_redirects=False) as resp:
            if "pushsvc_csrf" in resp.cookies:
                self.cookie = resp.cookies["pushsvc_csrf"].value
            self.html, self.headers = await resp.text(), resp.headers
            return resp.status, self.html, resp.headers

    async def get(self, path: str) -> tuple[int, str]:
        status, html, _ = await self.open("GET", path)
        return status, html

    async def submit(self, path: str, fields: dict[str, Any], **headers: str) -> tuple[int, str]:
        """Post `fields` as a form of the page last seen, with its hidden fields."""
        pairs = [(k, str(v)) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])]
        hidden = {"csrf_token": token_in(self.html), "lang": lang_in(self.html)}
        pairs += [(k, v) for k, v in hidden.items() if k not in fields]
        status, html, _ = await self.open("POST", path, pairs, **headers)
        return status, html


def token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    return found[1] if found else ""


def lang_in(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    return found[1] if found else ""


def error_beside(html: str, field_id: str) -> str | None:
    """The error shown beside the control `field_id`, which must point at it (aria-describedby)."""
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', html)
    if found is None:
        return None
    assert re.search(rf'id="{field_id}"[^>]*aria-describedby="{field_id}-error"', html), field_id
    return found[1]


class _Axe(HTMLParser):
    """Axe-style basics: the page's language and title, a label for every control, unique ids, no
    positive tabindex (which would take the keyboard out of reading order)."""

    CONTROLS = ("input", "select", "textarea")

    def __init__(self) -> None:
        super().__init__()
        self.lang = ""
        self.title = ""
        self.in_title = False
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.ids: list[str] = []
        self.tabindex: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        if tag == "title":
            self.in_title = True
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if a.get("tabindex") and int(str(a["tabindex"])) > 0:
            self.tabindex.append(str(a["tabindex"]))
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag in self.CONTROLS and a.get("type") not in ("hidden", "submit", "button"):
            self.controls.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data


def axe_problems(html: str) -> list[str]:
    axe = _Axe()
    axe.feed(html)
    problems = [] if axe.lang else ["<html> has no lang"]
    problems += [] if axe.title.strip() else ["no <title>"]
    problems += [f"unlabelled control {c.get('name')}" for c in axe.controls
                 if not (c.get("aria-label") or c.get("aria-labelledby") or c.get("id") in axe.labelled)]
    problems += [f"duplicate id {i}" for i in {i for i in axe.ids if axe.ids.count(i) > 1}]
    problems += [f"positive tabindex {t}" for t in axe.tabindex]
    return problems


def subscribe_fields(**changes: Any) -> dict[str, Any]:
    return {**ENTERPRISE, "domain": "employment-entrepreneurship", "channel": ["email"], "email": EMAIL,
            "frequency": "immediate", "locale": "zh-CN", "agree": "yes", **changes}


async def db_rows(settings_env: dict[str, str], query: sa.Select[Any]) -> list[Any]:
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()


async def subscriber(settings_env: dict[str, str], **where: str) -> Any:
    column, value = next(iter(where.items()))
    rows = await db_rows(settings_env, sa.select(subscribers).where(subscribers.c[column] == value))
    return rows[0] if rows else None


async def channels_of(settings_env: dict[str, str], sid: int) -> set[str]:
    C = subscriber_channels.c
    return {r.channel for r in await db_rows(settings_env, sa.select(C.channel).where(C.subscriber_id == sid))}


async def sms_sent(api: Api, gw: SmsGatewayStub) -> list[dict[str, Any]]:
    async with api.session.get(gw.url + "/_stub/messages") as resp:
        return await resp.json()


def codes_to(messages: list[dict[str, Any]], national: str) -> list[str]:
    return [m["params"]["content"] for m in messages if national in m["numbers"]]


def code_in(text: str) -> str:
    found = re.search(r"(?<!\d)(\d{6})(?!\d)", text)
    assert found, text
    return found[1]


def mail_to(sink: SmtpSink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
            for m in sink.messages() if address in m.rcpt_tos]


def link_in(message: email.message.EmailMessage, prefix: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(rf"https://push\.example\.gov\.cn({prefix}[^\s]+)", text)
    assert found, text
    return found[1]


# -- the messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["zh-CN", "zh-HK", "en"])
def test_manage_link_messages_render_in_every_locale(locale: str) -> None:
    """Pure: the e-mail carries the link and no unsubscribe header; the SMS its code in two parts."""
    settings = Settings(admin_token="a" * 16, secret_key="k" * 32, public_url="https://push.example.gov.cn",  # type: ignore[call-arg]
                        _env_file=None)
    renderer, signer = Renderer(REPO_ROOT / "templates"), TokenSigner("k" * 32)
    url = "https://push.example.gov.cn/manage/tok.en"
    expires = datetime(2026, 12, 2, 18, 30, tzinfo=LOCAL_ZONE)
    mail = EmailChannel(settings, renderer, signer).preview(
        ManageLinkMessage("manage_link", "n1", "管理订阅", url, expires, "", 0, manage_url=url), locale)
    assert url in mail["text"] and f'href="{url}"' in mail["html"] and "18:30" in mail["text"]
    sms = SmsChannel(settings, renderer, signer).preview(
        ManageLinkMessage("manage_link", "n2", "管理订阅", "https://push.example.gov.cn/s/AbCdEfG", expires, "042917", 10),
        locale)
    assert "042917" in sms["text"] and "10" in sms["text"] and sms["parts"] <= 2


# -- the form --------------------------------------------------------------------------------------


async def test_subscribe_form_from_a_qr_link_keeps_typed_values_and_shows_errors_beside_fields(
    api: Api, settings_env: dict[str, str]
) -> None:
    person = Visitor(api)
    status, html = await person.get(f"/subscribe{QR_QUERY}")
    assert status == 200 and axe_problems(html) == []
    assert re.search(r'id="g-enterprise" name="group" value="enterprise" checked', html)
    assert re.search(r'id="d-employment-entrepreneurship" name="domain" value="employment-entrepreneurship" checked', html)
    assert '<details open>\n<summary>填写工商业企业信息</summary>' in html  # the QR's group is open
    _, _, headers = await person.open("GET", "/subscribe")
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and "script" not in headers["Content-Security-Policy"]
    status, html = await person.get("/subscribe?lang=en&audience=enterprise")
    assert lang_in(html) == "en" and "Subscribe to policy updates" in html and 'href="/subscribe?audience=enterprise&amp;lang=zh-HK"' in html

    # Without the page's token (another site posting, or no cookie): refused, nothing lost.
    status, html, _ = await Visitor(api).open("POST", "/subscribe", subscribe_fields(name="张三"))
    assert status == 403 and "请再提交一次" in html and 'value="张三"' in html
    status, html = await person.submit("/subscribe", subscribe_fields(), **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403

    await person.get(f"/subscribe{QR_QUERY}")
    bad = subscribe_fields(**{"enterprise.uscc": "91350100M000100Y44", "phone": "12345", "channel": ["email", "sms"],
                              "quiet_start": "22:00", "agree": ""})
    status, html = await person.submit("/subscribe", bad)
    assert status == 422 and axe_problems(html) == []
    assert "check character" in (error_beside(html, "f-enterprise-uscc") or "")
    assert (error_beside(html, "f-phone") or "").startswith("请填写中国大陆手机号码")
    assert error_beside(html, "f-quiet") == "请同时填写开始和结束时间（时:分）。"
    assert "请阅读并勾选同意" in html and "请修改标出的项目后再提交" in html
    # What was typed is shown again.
    assert 'value="91350100M000100Y44"' in html and 'value="12345"' in html and f'value="{EMAIL}"' in html
    assert re.search(r'id="c-sms" name="channel" value="sms" checked', html)
    assert '<option value="haizhu" selected>' in html

    status, html = await person.submit("/subscribe", subscribe_fields(channel=["sms"], email=""))
    assert status == 422 and error_beside(html, "f-phone") == "选择短信时，请填写手机号码。"
    status, html = await person.submit("/subscribe", subscribe_fields(group=[], domain=[], channel=[], lang="en"))
    assert status == 422 and lang_in(html) == "en" and "Choose at least one group." in html
    assert "Choose at least one domain, or all domains." in html and "Choose at least one way" in html

    # A good form: stored as pending with no channel on, the consent saying what was asked for and where.
    status, html = await person.submit("/subscribe", subscribe_fields(all_domains="*", lang="zh-CN"))
    assert status == 200 and "请确认您的订阅" in html and "z***@example.com" in html and EMAIL not in html
    row = await subscriber(settings_env, email=EMAIL)
    assert row.status == "pending" and await channels_of(settings_env, row.id) == set()
    [consent] = await db_rows(settings_env, sa.select(consents).where(consents.c.subscriber_id == row.id))
    assert consent.action == "granted" and consent.source == "web:/subscribe"
    assert consent.scope == {"channels": ["email"], "domains": ["*"]}

    # A request nobody confirmed is replaced by the next one for the same organisation.
    await person.get("/subscribe")
    status, html = await person.submit("/subscribe", subscribe_fields(email="li.si@example.com"))
    assert status == 200
    assert (await subscriber(settings_env, id=row.id)).email == "li.si@example.com"


# -- the SMS code ----------------------------------------------------------------------------------


async def test_sms_code_confirms_and_a_number_gets_at_most_five_codes_an_hour(
    api: Api, workers: Workers, gateway: SmsGatewayStub, sink: SmtpSink, settings_env: dict[str, str]
) -> None:
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    key = (await api.department())["api_key"]
    person = Visitor(api)
    await person.get(f"/subscribe{QR_QUERY}")
    status, html = await person.submit("/subscribe", subscribe_fields(channel=["sms", "email"], phone="138 0013 8000",
                                                                       email="wang.wu@example.com"))
    assert status == 200 and "+86138****8000" in html and axe_problems(html) == []
    [text] = await eventually(lambda: _codes(api, gateway), timeout=20)
    code = code_in(text)
    [message] = [m for m in await sms_sent(api, gateway) if NATIONAL in m["numbers"]]
    assert "/s/" in message["params"]["url"] and message["text"].endswith("拒收请回复R")

    # A wrong code counts; the right one turns SMS on (e-mail waits for its own link).
    status, html = await person.submit("/verify", {"phone": PHONE, "code": "000000" if code != "000000" else "111111",
                                                   "action": "verify"})
    assert status == 422 and error_beside(html, "f-code") == "验证码不正确，还可以再试 4 次。"
    sid = (await subscriber(settings_env, phone=PHONE)).id
    assert (await subscriber(settings_env, id=sid)).status == "pending"

    # Nothing reaches a pending subscriber: a matching policy now sends them nothing.
    status, first = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": ["email", "sms"]})
    assert status == 202
    await eventually(lambda: _published(api, key, first["id"]))
    assert await channels_of(settings_env, sid) == set()

    status, html = await person.submit("/verify", {"phone": PHONE, "code": f"{code[:3]} {code[3:]}", "action": "verify"})
    assert status == 200 and "订阅已确认" in html and "短信" in html and axe_problems(html) == []
    row = await subscriber(settings_env, id=sid)
    assert row.status == "active" and await channels_of(settings_env, sid) == {"sms"}
    actions = [(r.action, r.source) for r in await db_rows(
        settings_env, sa.select(consents).where(consents.c.subscriber_id == sid).order_by(consents.c.id))]
    assert actions == [("granted", "web:/subscribe"), ("confirmed", "web:/verify")]
    await person.get("/verify")
    status, html = await person.submit("/verify", {"phone": PHONE, "code": code, "action": "verify"})
    assert status == 422 and "没有有效的验证码" in html  # a code works once
    [confirmation] = await eventually(lambda: mail_to(sink, "wang.wu@example.com"), timeout=20)
    assert "/confirm/" in link_in(confirmation, "/confirm/") and sink.count() == 1  # and no policy
    deliveries_of_first = await db_rows(settings_env, sa.select(deliveries).where(deliveries.c.policy_id == first["id"]))
    assert deliveries_of_first == []

    # A way into the manage page by phone: a code to the number, typed in on the same page.
    await person.get("/manage")
    status, html = await person.submit("/manage", {"contact": "138-0013-8000", "action": "send"})
    assert status == 200 and f'id="f-phone" name="phone" type="tel" value="{PHONE}"' in html
    texts = await eventually(lambda: _codes(api, gateway, 2), timeout=20)
    assert "管理政策信息推送订阅" in texts[-1]
    status, _ = await person.submit("/manage", {"phone": PHONE, "code": code_in(texts[-1]), "action": "enter"})
    assert status == 303 and person.headers is not None
    status, html = await person.get(person.headers["Location"])
    assert status == 200 and "我的订阅" in html and "短信" in html

    # Codes for this number: subscribe, manage, three resends; the sixth in the hour is refused clearly.
    await person.get("/verify")
    for n in range(3, 6):
        status, html = await person.submit("/verify", {"phone": PHONE, "action": "resend"})
        assert status == 200 and "如果这个号码正在等待验证" in html, n
    status, html = await person.submit("/verify", {"phone": PHONE, "action": "resend"})
    assert status == 429
    assert "这个手机号码一小时内已请求过 5 次验证码。为防止骚扰，请在约 60 分钟后再试。" == error_beside(html, "f-phone")
    await person.get("/subscribe")
    status, html = await person.submit("/subscribe", subscribe_fields(channel=["sms"], phone=PHONE, email=""))
    assert status == 429 and "5 次验证码" in html  # the subscribe form asks through the same limit
    await person.get("/manage")
    status, html = await person.submit("/manage", {"contact": PHONE, "action": "send"})
    assert status == 429 and "5 次验证码" in html


async def _codes(api: Api, gw: SmsGatewayStub, at_least: int = 1) -> list[str]:
    texts = codes_to(await sms_sent(api, gw), NATIONAL)
    return texts if len(texts) >= at_least else []


async def _published(api: Api, key: str, policy_id: int) -> bool:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    return status == 200 and body["status"] == "published"


# -- manage ----------------------------------------------------------------------------------------


def _without_token(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', "", html)


async def test_manage_answers_alike_then_pauses_leaves_exports_and_erases(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, str]
) -> None:
    workers.start()
    key = (await api.department())["api_key"]
    known, unknown = "known@example.com", "stranger@example.com"
    status, _ = await api.call("POST", "/v1/subscribers", key, json={
        "name": "广州某某科技有限公司", "email": known, "audiences": {"enterprise": {
            "uscc": "91350100M000100Y43", "district": "haizhu", "industry": "C", "scale": "small"}},
        "domains": ["*"], "channels": ["email"]})
    assert status == 201

    answers = []
    for contact in (known, unknown):
        person = Visitor(api)
        status, html = await person.get("/manage")
        assert status == 200 and axe_problems(html) == []
        began = time.monotonic()
        status, html = await person.submit("/manage", {"contact": contact, "action": "send"})
        answers.append((status, _without_token(html).replace(contact, "<typed>"), time.monotonic() - began))
    assert answers[0][:2] == answers[1][:2] and answers[0][0] == 200
    assert "如果这个联系方式已订阅，我们已向它发送管理链接或验证码" in answers[0][1]
    assert abs(answers[0][2] - answers[1][2]) < 0.5  # no look-up that only a known contact waits for
    [mail] = await eventually(lambda: mail_to(sink, known), timeout=20)
    assert mail_to(sink, unknown) == [] and "管理" in mail["Subject"] and mail["List-Unsubscribe"] is None
    path = link_in(mail, "/manage/")

    person = Visitor(api)
    status, html = await person.get(path)
    assert status == 200 and "我的订阅" in html and "正在接收" in html and axe_problems(html) == []
    assert 'value="广州某某科技有限公司"' in html and re.search(r'id="c-email" name="channel" value="email" checked', html)
    sid = (await subscriber(settings_env, email=known)).id

    status, html = await person.submit(path, {"action": "pause"})
    assert status == 200 and "已暂停" in html and (await subscriber(settings_env, id=sid)).status == "paused"
    status, html = await person.submit(path, {"action": "resume"})
    assert status == 200 and (await subscriber(settings_env, id=sid)).status == "active"

    # Save: daily digests, one more domain group, a changed name; e-mail stays on (this page's proof).
    form = {"group": "enterprise", "enterprise.uscc": "91350100M000100Y43", "enterprise.district": "tianhe",
            "enterprise.industry": "C", "enterprise.scale": "micro", "domain": ["tax-administration"],
            "channel": ["email"], "name": "新名字", "email": known, "frequency": "daily", "locale": "en",
            "action": "save"}
    status, html = await person.submit(path, form)
    assert status == 200 and "已保存" in html
    row = await subscriber(settings_env, id=sid)
    assert (row.name, row.frequency, row.locale, row.status) == ("新名字", "daily", "en", "active")
    assert await channels_of(settings_env, sid) == {"email"}

    # A new address is off until it is proven: the confirmation goes to it, its link turns it on.
    status, html = await person.submit(path, {**form, "email": "new.address@example.com"})
    assert status == 200 and "新的联系方式需要确认：n***@example.com" in html
    assert await channels_of(settings_env, sid) == set()
    [confirmation] = await eventually(lambda: mail_to(sink, "new.address@example.com"), timeout=20)
    confirm_path = link_in(confirmation, "/confirm/")
    await person.get(confirm_path)
    status, html = await person.submit(confirm_path, {})
    assert status == 200 and await channels_of(settings_env, sid) == {"email"}
    # The old link went to the old address: it opens nothing now; the confirmed page links a new one.
    assert (await person.get(path))[0] == 410
    new_link = re.search(r'href="(/manage/[^"?]+)', html)
    assert new_link
    path = new_link[1]

    # Their data, as JSON, and a tampered form token: refused, nothing changed.
    status, body, headers = await person.open("GET", f"{path}/data.json")
    data = json.loads(body)
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert data["subscriber"]["email"] == "new.address@example.com" and data["subscriber"]["audiences"]["enterprise"]["district"] == "tianhe"
    assert [c["action"] for c in data["consents"]][:2] == ["granted", "granted"]
    assert {"action": "confirmed", "scope": {"channels": ["email"], "contact": "email"}, "source": "web:/confirm"} in [
        {k: c[k] for k in ("action", "scope", "source")} for c in data["consents"]]
    await person.get(path)
    status, html, _ = await person.open("POST", path, {"action": "leave_all", "csrf_token": "forged.token", "lang": "zh-CN"})
    assert status == 403 and await channels_of(settings_env, sid) == {"email"}

    status, html = await person.get(path)  # now in the subscriber's own language
    assert lang_in(html) == "en" and "My subscription" in html
    status, html = await person.submit(path, {"action": "leave", "channel": "email"})
    assert status == 200 and "Unsubscribed." in html and await channels_of(settings_env, sid) == set()
    status, html = await person.submit(path, {"action": "leave_all"})
    assert status == 200 and (await subscriber(settings_env, id=sid)).status == "unsubscribed"

    # Erase: contacts and choices go at once; the ledger keeps its counts without a name.
    status, html = await person.submit(path, {"action": "erase"})
    assert status == 422 and error_beside(html, "f-erase") == "Tick the confirmation first."
    status, html = await person.submit(path, {"action": "erase", "erase_confirm": "yes", "lang": "zh-CN"})
    assert status == 200 and "您的数据已删除" in html
    row = await subscriber(settings_env, id=sid)
    assert row.status == "erased" and (row.email, row.name, row.uscc, row.phone) == (None, None, None, None)
    status, html = await person.get(path)
    assert status == 404 and "订阅不存在" in html
    status, _ = await api.call("GET", f"/v1/subscribers/{sid}", key)
    assert status == 404


async def test_requests_never_confirmed_are_forgotten(api: Api, settings_env: dict[str, str]) -> None:
    person = Visitor(api)
    await person.get("/subscribe")
    status, _ = await person.submit("/subscribe", subscribe_fields())
    key = (await api.department())["api_key"]
    status, active = await api.call("POST", "/v1/subscribers", key, json={
        "email": "active@example.com", "audiences": {"taxpayer": {"taxpayer_type": "general", "district": "haizhu"}},
        "domains": ["*"], "channels": ["email"]})
    assert status == 201, active
    pending = (await subscriber(settings_env, email=EMAIL)).id
    db = Database(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with db.write() as conn:
            assert await purge_unconfirmed(conn, now() - CONFIRM_TTL) == 0  # still within its 48 hours
        async with db.write() as conn:
            assert await purge_unconfirmed(conn, now() + timedelta(seconds=1)) == 1
    finally:
        await db.close()
    assert await subscriber(settings_env, id=pending) is None
    assert await db_rows(settings_env, sa.select(consents).where(consents.c.subscriber_id == pending)) == []
    assert (await subscriber(settings_env, id=active["id"])).status == "active"


async def test_without_redis_the_forms_say_to_try_later(settings: Settings) -> None:
    app = build_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            person = Visitor(Api(session, str(server.make_url("")).rstrip("/")))
            assert (await person.get("/manage"))[0] == 200  # reading a page needs no Redis
            status, html = await person.submit("/manage", {"contact": EMAIL, "action": "send"})
    finally:
        await server.close()
    assert status == 503 and "暂时无法处理" in html


# -- links -----------------------------------------------------------------------------------------


async def test_expired_tampered_and_stale_links_get_a_clear_page(api: Api, settings_env: dict[str, str]) -> None:
    person = Visitor(api)
    await person.get(f"/subscribe{QR_QUERY}")
    status, _ = await person.submit("/subscribe", subscribe_fields())
    sid = (await subscriber(settings_env, email=EMAIL)).id
    signer, keys = TokenSigner(SECRET), ContactKeys(SECRET)
    past = TokenSigner(SECRET, clock=lambda: time.time() - 3 * 86400)
    good_confirm, good_manage = confirm_token(signer, keys, sid, EMAIL), manage_token(signer, keys, sid, "email", EMAIL)

    status, html = await person.get(f"/confirm/{good_confirm}")
    assert status == 200 and "确认订阅" in html and axe_problems(html) == []
    assert (await subscriber(settings_env, id=sid)).status == "pending"  # a GET confirms nothing
    cases = {
        f"/confirm/{confirm_token(past, keys, sid, EMAIL)}": (410, "链接已过期"),
        f"/confirm/{good_confirm[:-2]}xx": (400, "链接无效"),
        f"/confirm/{confirm_token(signer, keys, sid, 'old.address@example.com')}": (404, "订阅不存在"),
        f"/confirm/{good_manage}": (400, "链接无效"),  # a token for another purpose
        f"/manage/{manage_token(past, keys, sid, 'email', EMAIL)}?lang=en": (410, "Link expired"),
        f"/manage/{good_confirm}": (400, "链接无效"),
        "/manage/%F0%9F%92%A5.%00": (400, "链接无效"),
        f"/manage/{manage_token(signer, keys, 999999, 'phone', '+8613800138000')}": (404, "订阅不存在"),
        f"/manage/{good_manage[:-2]}xx/data.json": (400, "链接无效"),
    }
    for path, (expected, words) in cases.items():
        for method in ("GET", "POST"):
            if method == "POST" and path.endswith("data.json"):
                continue
            status, html, headers = await person.open(method, path, {"action": "erase", "erase_confirm": "yes"})
            assert status == expected and words in html and headers["Content-Type"].startswith("text/html"), (path, method)
            assert axe_problems(html) == [], path
    assert (await subscriber(settings_env, id=sid)).status == "pending"

    # The right link confirms (by its button), and the address it was sent to must still be on file.
    await person.get(f"/confirm/{good_confirm}")
    status, html = await person.submit(f"/confirm/{good_confirm}", {})
    assert status == 200 and "订阅已确认" in html and "电子邮件" in html
    assert await channels_of(settings_env, sid) == {"email"}
    manage_link = re.search(r'href="(/manage/[^"]+)"', html)
    assert manage_link and (await person.get(manage_link[1].replace("&amp;", "&")))[0] == 200

    # Tokens never reach the logs.
    assert masked_path(f"/manage/{good_manage}/data.json") == "/manage/***/data.json"
    assert masked_path(f"/confirm/{good_confirm}") == "/confirm/***"

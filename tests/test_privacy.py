"""Issue 13, the person's side: the code check answers alike whether or not a number is subscribed;
erasure leaves the erased contact and name in no table; a malformed signature is a 401; admin
sessions end at sign-out and carry nothing of the token; token-bearing paths are masked in logs;
a manage link stops working once its contact changes; a large bad import neither blocks the
server nor answers megabytes. Real servers throughout."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.channels.sms import HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from pushsvc.core.figures import error_code
from pushsvc.core.tokens import TokenSigner
from pushsvc.core.verification import ContactKeys, manage_token
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.http.access_log import masked_path
from pushsvc.logs import mask_line
from pushsvc.web import csrf
from pushsvc.web.admin_pages import SESSION_COOKIE
from pushsvc.web.admin_sessions import SESSION
from tests.conftest import ADMIN, SECRET, Api, Workers, eventually
from tests.test_admin_browser import csrf_of, get, post
from tests.test_api_foundation import POLICY
from tests.test_self_service import Visitor, code_in, codes_to, error_beside, sms_sent, subscriber
from tests.test_sms import gateway, settings_env  # noqa: F401  (the SMS stub and its secret, no quiet hours)

ENTERPRISE = {"enterprise": {"uscc": "91350100M000100Y43", "district": "haizhu", "industry": "C", "scale": "small"}}


# -- the same answer -------------------------------------------------------------------------------


async def test_a_wrong_code_answers_alike_for_a_subscribed_and_an_unknown_number(
    api: Api, workers: Workers, gateway: SmsGatewayStub, settings_env: dict[str, str]  # noqa: F811
) -> None:
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    key = (await api.department())["api_key"]
    known, unknown = "+8613700137001", "+8613700137002"
    status, _ = await api.call("POST", "/v1/subscribers", key, json={
        "phone": known, "audiences": ENTERPRISE, "domains": ["*"], "channels": ["sms"]})
    assert status == 201

    async def round_of_wrong_codes(page: str, number: str, start: dict[str, str]) -> list[tuple[int, str]]:
        person = Visitor(api)
        await person.get(page)
        status, html = await person.submit(page, start)
        assert status == 200, html
        if number == known:  # the code really went out: the wrong ones below are wrong
            await eventually(lambda: _codes_for(api, gateway, number), timeout=20)
        answers = []
        for _ in range(6):
            status, html = await person.submit(page, {"phone": number, "code": "000000",
                                                      "action": "enter" if page == "/manage" else "verify"})
            answers.append((status, error_beside(html, "f-code") or ""))
        return answers

    manage = {n: await round_of_wrong_codes("/manage", n, {"contact": n, "action": "send"}) for n in (known, unknown)}
    assert manage[known] == manage[unknown]
    assert manage[known][0] == (422, "验证码不正确，还可以再试 4 次。")
    assert manage[known][-1][1].startswith("没有有效的验证码")  # the round spent: alike again
    verify = {n: await round_of_wrong_codes("/verify", n, {"phone": n, "action": "resend"}) for n in (known, unknown)}
    assert verify[known] == verify[unknown] == manage[known]

    # Without any round asked for, both numbers answer "no valid code" too.
    for number in (known, unknown):
        person = Visitor(api)
        await person.get("/verify")
        status, html = await person.submit("/verify", {"phone": number, "code": "123456", "action": "verify"})
        assert status == 422 and (error_beside(html, "f-code") or "").startswith("没有有效的验证码")

    # A real code still works in a new round.
    person = Visitor(api)
    await person.get("/manage")
    before = len(await _codes_for(api, gateway, known))
    await person.submit("/manage", {"contact": known, "action": "send"})
    texts = await eventually(lambda: _codes_for(api, gateway, known, before + 1), timeout=20)
    status, _ = await person.submit("/manage", {"phone": known, "code": code_in(texts[-1]), "action": "enter"})
    assert status == 303


async def _codes_for(api: Api, gw: SmsGatewayStub, number: str, at_least: int = 1) -> list[str]:
    texts = codes_to(await sms_sent(api, gw), number[3:])
    return texts if len(texts) >= at_least else []


# -- erasure ---------------------------------------------------------------------------------------

EMAIL, PHONE, NAME = "erase.me.zhang@example.com", "+8613911112222", "独一无二的欧阳某某"


async def _everywhere(database_url: str, needles: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text-like value of every table that holds a needle."""
    engine = create_async_engine(database_url)
    found: list[tuple[str, str, str]] = []
    try:
        async with engine.connect() as conn:
            meta = sa.MetaData()
            await conn.run_sync(meta.reflect)
            for table in meta.sorted_tables:
                for row in (await conn.execute(sa.select(table))).mappings():
                    for column, value in row.items():
                        text = str(value) if value is not None else ""
                        found += [(table.name, column, n) for n in needles if n in text]
    finally:
        await engine.dispose()
    return found


def _soon(seconds: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


async def _settled(api: Api, key: str, policy_id: int) -> bool:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    return status == 200 and body["deliveries"]["email"]["failed"] == 1


async def test_erasure_leaves_the_contact_and_name_in_no_table(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, str]  # noqa: F811
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    status, sub = await api.call("POST", "/v1/subscribers", key, json={
        "name": NAME, "email": EMAIL, "phone": PHONE, "audiences": ENTERPRISE, "domains": ["*"],
        "channels": ["email"]})
    assert status == 201, sub
    status, _ = await api.call("POST", "/v1/cases", key, json={
        "case_no": "ERASE-1", "service_item": "个体工商户设立登记",
        "applicant": {"name": NAME, "email": EMAIL, "phone": PHONE}, "channels": ["email"]})
    assert status == 201
    sink.set_faults(reject={EMAIL})  # the refusal quotes the address, as real servers' do
    workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    await eventually(lambda: _settled(api, key, policy["id"]), timeout=40)
    status, _ = await api.call("POST", "/v1/cases/ERASE-1/events", key, json={
        "event_id": "e1", "status": "accepted", "occurred_at": _soon(1),
        "note": f"{NAME}的材料已收"})
    assert status == 202
    status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=failed", key)
    assert [i["error"] for i in page["items"]] == ["550 5.1.1"]  # a department reads the code, not the address

    # The applicant first: their department erases them; another department's key cannot.
    other = (await api.department("市市场监管局"))["api_key"]
    assert (await api.call("DELETE", "/v1/cases/ERASE-1/applicant", other))[0] == 404
    assert (await api.call("DELETE", "/v1/cases/NO-SUCH/applicant", key))[0] == 404

    async def case_told() -> bool:
        engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.text("SELECT status FROM case_notifications"))).all()
        finally:
            await engine.dispose()
        return len(rows) >= 1 and all(r.status not in ("queued", "held") for r in rows)

    await eventually(case_told, timeout=40)
    status, _ = await api.call("DELETE", "/v1/cases/ERASE-1/applicant", key)
    assert status == 204
    status, log = await api.call("GET", "/v1/audit", key)
    assert status == 200 and any(e["action"] == "case.applicant.erase" and e["detail"]["case_no"] == "ERASE-1"
                                 for e in log["items"]), log
    status, case = await api.call("GET", "/v1/cases/ERASE-1", key)
    assert status == 200 and [e["status"] for e in case["events"]] == ["accepted"]  # the timeline stays
    sent_before = sink.count()
    status, _ = await api.call("POST", "/v1/cases/ERASE-1/events", key, json={
        "event_id": "e2", "status": "in_review", "occurred_at": _soon(2)})
    assert status == 202
    await asyncio.sleep(3)
    assert sink.count() == sent_before  # further events tell nobody

    # The subscriber erases themselves from their manage page.
    token = manage_token(TokenSigner(SECRET), ContactKeys(SECRET), sub["id"], "email", EMAIL)
    person = Visitor(api)
    await person.get(f"/manage/{token}")
    status, html = await person.submit(f"/manage/{token}", {"action": "erase", "erase_confirm": "yes"})
    assert status == 200, html

    found = await _everywhere(settings_env["PUSHSVC_DATABASE_URL"], (EMAIL, PHONE, PHONE[3:], NAME, "erase.me"))
    assert found == []


def test_a_provider_reply_is_kept_as_its_code() -> None:
    assert error_code("550 5.1.1 <a.b@example.com>: Recipient address rejected") == "550 5.1.1"
    assert error_code("isv.MOBILE_NUMBER_ILLEGAL: 13800138000 无效") == "isv.MOBILE_NUMBER_ILLEGAL"
    assert error_code("gave up after 3 attempts: 451 4.3.0 <a@b.cn> later") == "gave up after 3 attempts: 451 4.3.0"
    assert error_code("a@b.cn: no such user") == "unknown" and error_code("not delivered: UNDELIV") == "not delivered: UNDELIV"


# -- the smaller points ----------------------------------------------------------------------------


async def _raw_post(base: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """A request with header bytes as given (a client library would refuse to send non-ASCII)."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 + head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_malformed_or_non_ascii_signature_is_a_401(api: Api) -> None:
    body = b'{"receipts": []}'
    now = str(int(time.time())).encode()
    for timestamp, nonce, signature in [
        (now, b"n1", "签名".encode()),
        (now, b"n1", b"\xff\xfe"),
        (now, "随机".encode(), b"ab" * 32),
        ("²".encode(), b"n1", b"ab" * 32),
        (b"99999999999999999999999", b"n1", b"ab" * 32),
        (now, b"n1", b"not-hex"),
    ]:
        status = await _raw_post(api.base, "/v1/receipts/sms", [
            (HEADER_TIMESTAMP.encode(), timestamp), (HEADER_NONCE.encode(), nonce),
            (HEADER_SIGNATURE.encode(), signature)], body)
        assert status == 401, (timestamp, nonce, signature)


async def test_an_admin_session_ends_at_sign_out_and_carries_nothing_of_the_token(api: Api) -> None:
    status, html, resp = await get(api, "/admin")
    browser = {csrf.COOKIE: resp.cookies[csrf.COOKIE].value}
    status, _, jar = await post(api, "/admin/login", {"token": ADMIN, csrf.FIELD: csrf_of(html)}, browser)
    assert status == 303
    cookie = jar[SESSION_COOKIE].value
    payload = TokenSigner(SECRET).verify(SESSION, cookie)
    assert set(payload) == {"s"}  # a random id only
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    assert all(digest[i:i + 16] not in cookie for i in range(0, 48, 8)) and ADMIN not in cookie
    session = {SESSION_COOKIE: cookie, **browser}
    status, html, _ = await get(api, "/admin", session)
    assert status == 200
    status, _, _ = await post(api, "/admin/logout", {csrf.FIELD: csrf_of(html)}, session)
    assert status == 303
    status, html, _ = await get(api, "/admin", session)  # the cookie replayed after sign-out
    assert status == 401 and 'name="token"' in html
    assert (await get(api, "/admin/report.csv", session))[0] == 401


def test_every_token_bearing_path_is_masked_in_logs() -> None:
    for path, shown in [("/s/AbCdEfG", "/s/***"), ("/d/eyJ0.sig", "/d/***"), ("/d/eyJ0.sig/qr.png", "/d/***/qr.png"),
                        ("/u/t.s", "/u/***"), ("/c/t.s", "/c/***"), ("/manage/t.s/data.json", "/manage/***/data.json"),
                        ("/confirm/t.s", "/confirm/***"), ("/p/12", "/p/12"), ("/manage", "/manage")]:
        assert masked_path(path) == shown
    line = 'GET https://push.example.gov.cn/s/AbCdEfG and "/d/eyJ0.sig" for 13800138000'
    assert mask_line(line) == 'GET https://push.example.gov.cn/s/*** and "/d/***" for 138****8000'


async def test_a_manage_link_stops_working_once_its_contact_changes(api: Api, settings_env: dict[str, str]) -> None:  # noqa: F811
    key = (await api.department())["api_key"]
    old, new = "first.address@example.com", "second.address@example.com"
    status, sub = await api.call("POST", "/v1/subscribers", key, json={
        "email": old, "audiences": ENTERPRISE, "domains": ["*"], "channels": ["email"]})
    assert status == 201
    path = f"/manage/{manage_token(TokenSigner(SECRET), ContactKeys(SECRET), sub['id'], 'email', old)}"
    person = Visitor(api)
    assert (await person.get(path))[0] == 200
    form = {"group": "enterprise", "enterprise.uscc": "91350100M000100Y43", "enterprise.district": "haizhu",
            "enterprise.industry": "C", "enterprise.scale": "small", "all_domains": "*", "channel": ["email"],
            "email": new, "frequency": "immediate", "locale": "zh-CN", "action": "save"}
    status, html = await person.submit(path, form)
    assert status == 200 and "新的联系方式需要确认" in html
    for method, fields in (("GET", None), ("POST", {"action": "erase", "erase_confirm": "yes"})):
        status, html, _ = await person.open(method, path, fields)
        assert status == 410 and "链接已失效" in html, method
    status, body, _ = await person.open("GET", f"{path}/data.json")
    assert status == 410 and new not in body
    assert (await subscriber(settings_env, id=sub["id"])).email == new  # nothing erased through the old link


async def test_a_large_bad_import_keeps_the_server_answering_and_its_answer_short(api: Api) -> None:
    key = (await api.department())["api_key"]
    rows = 250_000
    csv = ("name,email,domains,channels\n" + "x,not-an-address,*,email\n" * rows).encode()
    slowest = 0.0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal slowest
        while not done.is_set():
            began = time.monotonic()
            status, _ = await api.call("GET", "/healthz")
            assert status == 200
            slowest = max(slowest, time.monotonic() - began)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    status, body = await api.call("POST", "/v1/subscribers/import", key, data=csv, headers={"Content-Type": "text/csv"})
    done.set()
    await watcher
    assert status == 200 and body["imported"] == 0
    assert len(body["rejected"]) == 1000 and body["rejected_more"] == rows - 1000
    assert body["rejected"][0]["row"] == 2 and body["rejected"][-1]["row"] == 1001
    assert slowest < 0.5, slowest

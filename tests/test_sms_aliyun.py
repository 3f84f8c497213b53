"""Aliyun SMS: the official SDK against the stand-in (which checks the real ACS3 signature), our
client's signature byte for byte as the SDK's signer computes it, and a fan-out through the
stand-in with real workers: requests of 100, SmsReport receipts (pushed twice) moving rows to
delivered once, an SmsUp R reply unsubscribing, and rows left unknown settled by QuerySendDetails."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa
from alibabacloud_dysmsapi20170525 import models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.channels.sms.providers.aliyun import SEND_BATCH, AliyunSms
from pushsvc.channels.sms.providers.base import callback_path
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.dev.stubs.sms.aliyun import AliyunSmsStub
from pushsvc.settings import Settings
from pushsvc.store.schema import deliveries, subscribers
from tests.conftest import Api, Workers, eventually
from tests.test_sms import SIGN, SMS_POLICY, phone, seed, settled, stub_get, stub_post

AK, AK_SECRET, TOKEN, TEMPLATE = "LTAI5tTestKeyId", "aliyun-test-secret-0123", "cb-token-0123456789abcdef", "SMS_4650001"


# No default quiet hours: these tests must not depend on the time of day they run at.
ENV = {"PUSHSVC_SMS_PROVIDERS": "aliyun", "PUSHSVC_SMS_ALIYUN_ACCESS_KEY_ID": AK,
       "PUSHSVC_SMS_ALIYUN_ACCESS_KEY_SECRET": AK_SECRET, "PUSHSVC_SMS_ALIYUN_TEMPLATE_CODE": TEMPLATE,
       "PUSHSVC_SMS_CALLBACK_TOKEN": TOKEN, "PUSHSVC_SMS_SIGN_NAME": SIGN, "PUSHSVC_QUIET_HOURS": "00:00-00:00"}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, **ENV}


async def start_stub(api: Api, receipt_delay: float) -> AliyunSmsStub:
    stub = AliyunSmsStub(AK, AK_SECRET, api.base + callback_path("aliyun", TOKEN, "report"),
                         api.base + callback_path("aliyun", TOKEN, "reply"), receipt_delay, TEMPLATE)
    await stub.start()
    return stub


@pytest.fixture
async def aliyun(api: Api) -> AsyncIterator[AliyunSmsStub]:
    stub = await start_stub(api, 0.3)
    yield stub
    await stub.stop()


def sdk_client(stub: AliyunSmsStub, secret: str = AK_SECRET) -> Client:
    return Client(Config(access_key_id=AK, access_key_secret=secret, endpoint=stub.url.split("//", 1)[1],
                         protocol="http"))


async def test_the_official_sdk_is_accepted(api: Api, aliyun: AliyunSmsStub) -> None:
    numbers = ["13800138000", "13900139000"]
    params = [{"content": "关于稳岗扩岗的若干措施", "url": "https://push.example.gov.cn/s/AbCd", "opt_out": "拒收请回复R"}] * 2
    request = models.SendBatchSmsRequest(
        phone_number_json=json.dumps(numbers), sign_name_json=json.dumps([SIGN] * 2, ensure_ascii=False),
        template_code=TEMPLATE, template_param_json=json.dumps(params, ensure_ascii=False), out_id="our-request-1")
    reply = await asyncio.to_thread(sdk_client(aliyun).send_batch_sms, request)
    assert reply.body.code == "OK" and reply.body.biz_id
    [message] = await stub_get(api, aliyun, "/_stub/messages")
    assert message["numbers"] == numbers and message["out_id"] == "our-request-1"
    assert message["text"] == f"【{SIGN}】关于稳岗扩岗的若干措施 https://push.example.gov.cn/s/AbCd 拒收请回复R"

    # The query the sweeper uses, through the SDK too (dates are Aliyun's, in China).
    today = datetime.now(LOCAL_ZONE).strftime("%Y%m%d")
    details = await asyncio.to_thread(sdk_client(aliyun).query_send_details, models.QuerySendDetailsRequest(
        phone_number=numbers[0], send_date=today, page_size=10, current_page=1))
    [row] = details.body.sms_send_detail_dtos.sms_send_detail_dto
    assert row.out_id == "our-request-1" and row.phone_num == numbers[0]

    # Signed with another secret: refused as Aliyun refuses it, and nothing recorded.
    with pytest.raises(ClientException) as refused:
        await asyncio.to_thread(sdk_client(aliyun, "not-the-secret").send_batch_sms, request)
    assert refused.value.code == "SignatureDoesNotMatch"
    async with api.session.post(aliyun.url + "/?OutId=x", data=b"PhoneNumberJson=%5B%5D") as resp:
        assert resp.status == 400 and (await resp.json())["Code"] == "IncompleteSignature"
    assert len(await stub_get(api, aliyun, "/_stub/messages")) == 1


def test_our_signature_is_the_sdks(settings: Settings) -> None:
    provider = AliyunSms(settings)
    url, body, headers = provider.signed_request(
        SEND_BATCH, {"OutId": "abc 123/~", "TemplateCode": TEMPLATE},
        {"PhoneNumberJson": '["13800138000"]', "SignNameJson": json.dumps([SIGN], ensure_ascii=False),
         "TemplateParamJson": json.dumps([{"content": "内容 & 链接", "url": "https://x/s/A", "opt_out": "拒收请回复R"}],
                                         ensure_ascii=False)})
    parts = urlsplit(url)
    signed = {k: v for k, v in headers.items() if k != "Authorization"}
    payload = Utils.hash(body, "ACS3-HMAC-SHA256").hex()
    assert signed["x-acs-content-sha256"] == payload
    as_sent = SimpleNamespace(method="POST", pathname=parts.path, query=dict(parse_qsl(parts.query)), headers=signed)
    assert headers["Authorization"] == Utils.get_authorization(as_sent, "ACS3-HMAC-SHA256", payload, AK, AK_SECRET)


async def _rows(settings_env: dict[str, str]) -> list[Any]:
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(
                sa.select(subscribers.c.phone, deliveries.c.status, deliveries.c.provider, deliveries.c.provider_ref)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id).order_by(deliveries.c.id))).all())
    finally:
        await engine.dispose()


def sent_once(messages: list[dict[str, Any]], n: int) -> None:
    numbers = Counter(num for m in messages for num in m["numbers"])
    assert len(numbers) == n and max(numbers.values()) == 1, numbers.most_common(3)


async def test_fan_out_receipts_twice_and_reply_r(api: Api, workers: Workers, aliyun: AliyunSmsStub,
                                                  settings_env: dict[str, str]) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 250)
    await stub_post(api, aliyun, "/_stub/faults", {"duplicate_receipts": True, "undelivered_numbers": [phone(7)]})
    workers.start(PUSHSVC_SMS_ALIYUN_URL=aliyun.url, PUSHSVC_FANOUT_BATCH_SIZE="250")
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    assert status == 202, policy
    final = await eventually(lambda: settled(api, key, policy["id"], 250, ("delivered", "failed")), timeout=90)
    assert final["delivered"] == 249 and final["failed"] == 1

    messages = await stub_get(api, aliyun, "/_stub/messages")
    assert sorted(len(m["numbers"]) for m in messages) == [50, 100, 100]  # SendBatchSms takes 100 at most
    sent_once(messages, 250)
    assert all(m["sign_name"] == SIGN and m["template_code"] == TEMPLATE for m in messages)
    # Every receipt came twice; each row moved once, and records who took it.
    stats = await eventually(lambda: _posted(api, aliyun, 500), timeout=30)
    assert stats["receipts_posted"] == 500
    rows = await _rows(settings_env)
    assert {r.provider for r in rows} == {"aliyun"} and len(rows) == 250
    assert Counter(r.status for r in rows) == {"delivered": 249, "failed": 1}
    assert all(phone(7)[3:] not in (r.provider_ref or "") for r in rows)  # no number in the ledger

    # A reply R through SmsUp: that number gets no SMS any more.
    reply = await stub_post(api, aliyun, "/_stub/inbound", {"phone_number": phone(3), "content": "R"})
    assert reply["acknowledged"] is True
    sid = next(r for r in await _subscribers(settings_env) if r.phone == phone(3)).id
    status, sub = await api.call("GET", f"/v1/subscribers/{sid}", key)
    assert status == 200 and "sms" not in sub["channels"]

    # Pushes to a wrong token or of another shape are refused, and change nothing.
    async with api.session.post(api.base + callback_path("aliyun", "wrong-token", "report"), json=[]) as resp:
        assert resp.status == 404
    async with api.session.post(api.base + callback_path("aliyun", TOKEN, "report"), json={"x": 1}) as resp:
        assert resp.status == 422 and resp.content_type == "application/problem+json"


async def _posted(api: Api, stub: AliyunSmsStub, n: int) -> dict[str, Any] | None:
    stats = await stub_get(api, stub, "/_stub/stats")
    return stats if stats["receipts_posted"] >= n else None


async def _subscribers(settings_env: dict[str, str]) -> list[Any]:
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(subscribers.c.id, subscribers.c.phone))).all())
    finally:
        await engine.dispose()


async def test_unknown_settled_by_query_send_details(api: Api, workers: Workers,
                                                      settings_env: dict[str, str]) -> None:
    stub = await start_stub(api, 120)  # no receipt within the test: only the query can settle
    try:
        key = (await api.department())["api_key"]
        await seed(api, key, 60)
        # Taken, then no answer, and the query right after fails too: the rows are unknown.
        await stub_post(api, stub, "/_stub/faults", {"accept_timeout": 1.0, "query_error": 1.0})
        workers.start(PUSHSVC_SMS_ALIYUN_URL=stub.url, PUSHSVC_SMS_TIMEOUT="1", PUSHSVC_MAX_ATTEMPTS="12")
        status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
        assert status == 202, policy
        await eventually(lambda: settled(api, key, policy["id"], 60, ("unknown",)), timeout=30)
        await stub_post(api, stub, "/_stub/faults", {})  # QuerySendDetails answers again
        counts = await eventually(lambda: settled(api, key, policy["id"], 60, ("sent",)), timeout=40)
        assert counts["failed"] == counts["unknown"] == 0
        sent_once(await stub_get(api, stub, "/_stub/messages"), 60)
        assert {r.provider for r in await _rows(settings_env)} == {"aliyun"}
    finally:
        await stub.stop()


async def test_lost_receipts_settled_by_query_send_details(api: Api, workers: Workers,
                                                           settings_env: dict[str, str]) -> None:
    # Receipts pushed where nobody takes them: the rows stay `sent` until the sweeper asks.
    stub = AliyunSmsStub(AK, AK_SECRET, api.base + callback_path("aliyun", "not-the-token", "report"),
                         api.base + callback_path("aliyun", TOKEN, "reply"), 0.2, TEMPLATE)
    await stub.start()
    try:
        key = (await api.department())["api_key"]
        await seed(api, key, 30)
        await stub_post(api, stub, "/_stub/faults", {"undelivered_numbers": [phone(4)]})
        workers.start(PUSHSVC_SMS_ALIYUN_URL=stub.url, PUSHSVC_SMS_RECEIPT_WAIT_SECONDS="2")
        status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
        assert status == 202, policy
        final = await eventually(lambda: settled(api, key, policy["id"], 30, ("delivered", "failed")), timeout=60)
        assert final["delivered"] == 29 and final["failed"] == 1
        assert (await stub_get(api, stub, "/_stub/stats"))["receipts_posted"] == 0  # none of them came
    finally:
        await stub.stop()

"""Tencent Cloud SMS: the official SDK against the stand-in (which checks the real TC3
signature), our client's signature byte for byte as the SDK's signer computes it, and a fan-out
through the stand-in with real workers: requests of 200, report_status pushes (twice) moving rows
to delivered once, a reply R unsubscribing, and rows left unknown settled by the per-number pull."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client

from pushsvc.channels.sms.providers.base import callback_path
from pushsvc.channels.sms.providers.signing import tc3_date
from pushsvc.channels.sms.providers.tencent import SEND, SERVICE, TencentSms
from pushsvc.dev.stubs.sms.tencent import TencentSmsStub
from pushsvc.settings import Settings
from tests.conftest import Api, Workers, eventually
from tests.test_sms import SIGN, SMS_POLICY, phone, seed, settled, stub_get, stub_post
from tests.test_sms_aliyun import _posted, _rows, _subscribers, sent_once

SECRET_ID, SECRET_KEY, TOKEN, TEMPLATE, APP = "AKIDtestSecretId", "tencent-test-key-0123", "cb-token-tencent-0123", "2046001", "1400000001"


ENV = {"PUSHSVC_SMS_PROVIDERS": "tencent", "PUSHSVC_SMS_TENCENT_SECRET_ID": SECRET_ID,
       "PUSHSVC_SMS_TENCENT_SECRET_KEY": SECRET_KEY, "PUSHSVC_SMS_TENCENT_TEMPLATE_ID": TEMPLATE,
       "PUSHSVC_SMS_TENCENT_SDK_APP_ID": APP, "PUSHSVC_SMS_CALLBACK_TOKEN": TOKEN, "PUSHSVC_SMS_SIGN_NAME": SIGN,
       "PUSHSVC_QUIET_HOURS": "00:00-00:00"}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, **ENV}


async def start_stub(api: Api, receipt_delay: float) -> TencentSmsStub:
    stub = TencentSmsStub(SECRET_ID, SECRET_KEY, api.base + callback_path("tencent", TOKEN, "report"),
                          api.base + callback_path("tencent", TOKEN, "reply"), receipt_delay, TEMPLATE)
    await stub.start()
    return stub


@pytest.fixture
async def tencent(api: Api) -> AsyncIterator[TencentSmsStub]:
    stub = await start_stub(api, 0.3)
    yield stub
    await stub.stop()


def sdk_client(stub: TencentSmsStub, secret: str = SECRET_KEY) -> sms_client.SmsClient:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=stub.url.split("//", 1)[1], protocol="http"))
    return sms_client.SmsClient(credential.Credential(SECRET_ID, secret), "ap-guangzhou", profile)


async def test_the_official_sdk_is_accepted(api: Api, tencent: TencentSmsStub) -> None:
    request = models.SendSmsRequest()
    request.from_json_string(json.dumps({
        "PhoneNumberSet": ["+8613800138000", "+8613900139000"], "SmsSdkAppId": APP, "SignName": SIGN,
        "TemplateId": TEMPLATE, "TemplateParamSet": ["关于稳岗扩岗的若干措施", "https://push.example.gov.cn/s/AbCd",
                                                     "拒收请回复R"], "SessionContext": "our-request-1"}))
    reply = await asyncio.to_thread(sdk_client(tencent).SendSms, request)
    assert [s.Code for s in reply.SendStatusSet] == ["Ok", "Ok"]
    assert all(s.SerialNo and s.SessionContext == "our-request-1" for s in reply.SendStatusSet)
    [message] = await stub_get(api, tencent, "/_stub/messages")
    assert message["numbers"] == ["13800138000", "13900139000"]
    assert message["text"] == f"【{SIGN}】关于稳岗扩岗的若干措施 https://push.example.gov.cn/s/AbCd 拒收请回复R"

    with pytest.raises(TencentCloudSDKException) as refused:
        await asyncio.to_thread(sdk_client(tencent, "not-the-key").SendSms, request)
    assert refused.value.code == "AuthFailure.SignatureFailure"
    async with api.session.post(tencent.url + "/", json={}) as resp:
        assert (await resp.json())["Response"]["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    assert len(await stub_get(api, tencent, "/_stub/messages")) == 1


def test_our_signature_is_the_sdks(settings: Settings) -> None:
    url, body, headers = TencentSms(settings).signed_request(SEND, {
        "PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": APP, "SignName": SIGN, "TemplateId": TEMPLATE,
        "TemplateParamSet": ["内容 & 链接", "https://x/s/A", "拒收请回复R"], "SessionContext": "abc"})
    sdk = sms_client.SmsClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou")
    as_sent = RequestInternal(headers["Host"], "POST", "/", header=dict(headers), data=body)
    timestamp = int(headers["X-TC-Timestamp"])
    signature = sdk._get_tc3_signature({}, as_sent, tc3_date(timestamp), SERVICE, SECRET_KEY)
    assert headers["Authorization"] == (f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{tc3_date(timestamp)}/{SERVICE}/"
                                        f"tc3_request, SignedHeaders=content-type;host, Signature={signature}")
    assert url.endswith("/") and headers["Content-Type"] == "application/json"


async def test_fan_out_receipts_twice_and_reply_r(api: Api, workers: Workers, tencent: TencentSmsStub,
                                                  settings_env: dict[str, str]) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 450)
    await stub_post(api, tencent, "/_stub/faults", {"duplicate_receipts": True, "undelivered_numbers": [phone(7)],
                                                    "refused_numbers": [phone(8)]})
    workers.start(PUSHSVC_SMS_TENCENT_URL=tencent.url, PUSHSVC_FANOUT_BATCH_SIZE="450")
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    assert status == 202, policy
    final = await eventually(lambda: settled(api, key, policy["id"], 450, ("delivered", "failed")), timeout=90)
    assert final["delivered"] == 448 and final["failed"] == 2

    messages = await stub_get(api, tencent, "/_stub/messages")
    assert sorted(len(m["numbers"]) for m in messages) == [50, 200, 200]  # SendSms takes 200 at most
    sent_once(messages, 450)
    await eventually(lambda: _posted(api, tencent, 2 * 449), timeout=30)  # every report pushed twice
    rows = await _rows(settings_env)
    assert Counter(r.status for r in rows) == {"delivered": 448, "failed": 2}
    assert {r.provider for r in rows if r.phone != phone(8)} == {"tencent"}
    status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=failed", key)
    assert sorted(i["error"].split(":")[0] for i in page["items"]) == ["FailedOperation.PhoneNumberInBlacklist",
                                                                      "not delivered"]

    reply = await stub_post(api, tencent, "/_stub/inbound", {"phone_number": phone(3), "content": "TD"})
    assert reply["acknowledged"] is True
    sid = next(r for r in await _subscribers(settings_env) if r.phone == phone(3)).id
    status, sub = await api.call("GET", f"/v1/subscribers/{sid}", key)
    assert status == 200 and "sms" not in sub["channels"]
    async with api.session.post(api.base + callback_path("tencent", TOKEN, "reply"), json=[{"mobile": 1}]) as resp:
        assert resp.status == 422


async def test_unknown_settled_by_the_pull(api: Api, workers: Workers, settings_env: dict[str, str]) -> None:
    # Reports come after 6 s, for messages the ledger does not know yet (their rows are unknown, and
    # Tencent's report names no request): answered "not yet", pushed again; the sweeper's pull by
    # number finds them first, then the pushes settle them.
    stub = await start_stub(api, 6)
    try:
        key = (await api.department())["api_key"]
        await seed(api, key, 60)
        await stub_post(api, stub, "/_stub/faults", {"accept_timeout": 1.0, "query_error": 1.0})
        # (A push given up on is asked about after 5 s: on a slow machine the sweeper may settle the
        # rows only after Tencent's pushes stopped.)
        workers.start(PUSHSVC_SMS_TENCENT_URL=stub.url, PUSHSVC_SMS_TIMEOUT="1", PUSHSVC_MAX_ATTEMPTS="12",
                      PUSHSVC_SMS_RECEIPT_WAIT_SECONDS="5")
        status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
        assert status == 202, policy
        await eventually(lambda: settled(api, key, policy["id"], 60, ("unknown",)), timeout=30)
        await stub_post(api, stub, "/_stub/faults", {})
        counts = await eventually(lambda: settled(api, key, policy["id"], 60, ("delivered",)), timeout=60)
        assert counts["failed"] == counts["unknown"] == 0
        sent_once(await stub_get(api, stub, "/_stub/messages"), 60)
        assert {r.provider for r in await _rows(settings_env)} == {"tencent"}
    finally:
        await stub.stop()


async def test_lost_receipts_settled_by_the_pull(api: Api, workers: Workers) -> None:
    stub = TencentSmsStub(SECRET_ID, SECRET_KEY, api.base + callback_path("tencent", "not-the-token", "report"),
                          api.base + callback_path("tencent", TOKEN, "reply"), 0.2, TEMPLATE)
    await stub.start()
    try:
        key = (await api.department())["api_key"]
        await seed(api, key, 30)
        await stub_post(api, stub, "/_stub/faults", {"undelivered_numbers": [phone(4)]})
        workers.start(PUSHSVC_SMS_TENCENT_URL=stub.url, PUSHSVC_SMS_RECEIPT_WAIT_SECONDS="2")
        status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
        assert status == 202, policy
        final = await eventually(lambda: settled(api, key, policy["id"], 30, ("delivered", "failed")), timeout=60)
        assert final["delivered"] == 29 and final["failed"] == 1
        assert (await stub_get(api, stub, "/_stub/stats"))["receipts_posted"] == 0
    finally:
        await stub.stop()

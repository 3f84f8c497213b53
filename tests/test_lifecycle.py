"""A policy's life after publishing, end to end: revised, repealed and lapsed policies are told to
exactly the people who received them, on the channel they received them (the API, real worker
processes, the SMTP sink and the SMS stand-in), and the public page says where the policy stands."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pushsvc.channels import build_channels
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.delivery.fanout import run_fanout
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.policies.lifecycle import run_lapse
from pushsvc.services import Services, open_services
from pushsvc.settings import Settings
from pushsvc.store.schema import deliveries
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY, enterprise
from tests.test_sms import SMS_SECRET, gateway, settings_env  # noqa: F401  (the SMS stub, no quiet hours)

BOTH = {**POLICY, "channels": ["email", "sms"]}


@asynccontextmanager
async def services_for(settings: Settings) -> AsyncIterator[Services]:
    """The service's parts in this process, channels started, as a worker has them."""
    services = await open_services(settings)
    services.channels = build_channels(settings, services.renderer, services.signer)
    for channel in services.channels.values():
        await channel.start()
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    """To drive a cron function in this process with a clock of our choosing."""
    async with services_for(settings) as services:
        yield services


async def subscriber(api: Api, key: str, n: int, **extra: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(n, **extra))
    assert status == 201, body
    return body


async def policy(api: Api, key: str, policy_id: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    return body


def settled(got: dict[str, Any], expected: dict[str, int], notice: int = 0) -> bool:
    """Every channel's rows done, as `expected` (channel -> rows) says there are."""
    counts = got["deliveries"] if notice == 0 else got["notices"][notice - 1]["deliveries"]
    done = {ch: sum(c[s] for s in ("sent", "delivered", "failed", "held")) for ch, c in counts.items()}
    return got["status"] != "publishing" and all(done.get(ch, 0) == n for ch, n in expected.items())


async def wait(api: Api, key: str, policy_id: int, expected: dict[str, int], notice: int = 0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        got = await policy(api, key, policy_id)
        return got if len(got["notices"]) >= notice and settled(got, expected, notice) else None

    return await eventually(check, timeout=30)


def text_of(raw: bytes) -> tuple[str, str]:
    """(Subject, text/plain body) of a message as the sink got it."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return str(msg["Subject"]), msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


async def stub_messages(api: Api, gateway: SmsGatewayStub) -> list[dict[str, Any]]:
    async with api.session.get(gateway.url + "/_stub/messages") as resp:
        return await resp.json()


async def notice_rows(api: Api, key: str, policy_id: int, notice: int) -> set[tuple[int, str]]:
    status, page = await api.call("GET", f"/v1/policies/{policy_id}/deliveries?notice={notice}", key)
    assert status == 200, page
    return {(item["subscriber_id"], item["channel"]) for item in page["items"]}


async def test_revision_reaches_exactly_the_earlier_recipients(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub
) -> None:
    key = (await api.department())["api_key"]
    told = await subscriber(api, key, 1)  # e-mail: receives it
    refused = await subscriber(api, key, 2)  # e-mail refused by the server: never received it
    by_sms = await subscriber(api, key, 3, channels=["email", "sms"])  # only the SMS gets through
    digest = await subscriber(api, key, 4, frequency="daily")  # waits for tomorrow's digest
    sink.set_faults(reject={refused["email"], by_sms["email"]})
    workers.start(PUSHSVC_SMS_URL=gateway.url)

    status, published = await api.call("POST", "/v1/policies", key, json=BOTH)
    assert status == 202, published
    before = await wait(api, key, published["id"], {"email": 4, "sms": 1})
    mails = before["deliveries"]["email"]
    assert (mails["sent"], mails["failed"], mails["held"]) == (1, 2, 1)
    await eventually(lambda: _sms_delivered(api, key, published["id"]))
    late = await subscriber(api, key, 5, channels=["email", "sms"])  # matches, but came after the publish
    sink.clear()
    sink.set_faults()

    status, revised = await api.call("POST", f"/v1/policies/{published['id']}/revise", key,
                                     json={"title": "关于支持中小微企业稳岗扩岗的若干措施（修订）",
                                           "effective_on": "2027-01-01", "summary": POLICY["summary"]})
    assert status == 202, revised
    assert revised["revision"] == 2 and revised["title"].endswith("（修订）")
    [revision] = revised["revisions"]
    assert revision["revision"] == 2 and [c["field"] for c in revision["changes"]] == ["title", "effective_on"]
    assert revision["changes"][1] == {"field": "effective_on", "before": None, "after": "2027-01-01"}

    after = await wait(api, key, published["id"], {"email": 1, "sms": 1}, notice=1)
    assert after["notices"][0]["kind"] == "revised" and after["notices"][0]["revision"] == 2
    assert after["deliveries"]["email"]["sent"] == 1  # the policy's own figures are unchanged
    assert await notice_rows(api, key, published["id"], 1) == {(told["id"], "email"), (by_sms["id"], "sms")}

    [mail] = sink.messages()
    assert mail.rcpt_tos == (told["email"],)
    subject, text = text_of(mail.data)
    assert subject == "【市人社局】政策修订：关于支持中小微企业稳岗扩岗的若干措施（修订）"
    assert "- 标题：关于支持中小微企业稳岗扩岗的若干措施 → 关于支持中小微企业稳岗扩岗的若干措施（修订）" in text
    assert "- 施行日期：— → 2027年1月1日" in text and f"/p/{published['id']}" in text
    texts = [m for m in await stub_messages(api, gateway) if "已修订" in m["text"]]
    assert [m["numbers"] for m in texts] == [[by_sms["phone"][3:]]]
    assert "修订了标题、施行日期" in texts[0]["text"] and "/s/" in texts[0]["text"]
    for nobody in (refused, digest, late):
        assert all(nobody["id"] != sid for sid, _ in await notice_rows(api, key, published["id"], 1))

    status, page = await api.call("GET", f"/p/{published['id']}")
    assert status == 200 and "修订记录 Revisions" in page and "第2版 Version 2" in page
    assert "施行日期 In force from：— → 2027-01-01" in page

    # Nothing to revise, and what a revision may not touch, are refused without writing anything.
    status, same = await api.call("POST", f"/v1/policies/{published['id']}/revise", key,
                                  json={"effective_on": "2027-01-01"})
    assert status == 422 and same["errors"][0]["field"] == "body"
    status, fixed = await api.call("POST", f"/v1/policies/{published['id']}/revise", key,
                                   json={"targeting": POLICY["targeting"], "title": None})
    assert status == 422 and fixed["errors"][0]["field"] == "targeting"
    status, null = await api.call("POST", f"/v1/policies/{published['id']}/revise", key, json={"title": None})
    assert status == 422 and null["errors"][0]["field"] == "title"
    assert (await policy(api, key, published["id"]))["revision"] == 2


async def _sms_delivered(api: Api, key: str, policy_id: int) -> bool:
    return (await policy(api, key, policy_id))["deliveries"]["sms"]["delivered"] == 1


async def test_repeal_is_shown_on_the_page_and_sent(api: Api, workers: Workers, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    told = await subscriber(api, key, 1)
    workers.start()
    status, published = await api.call("POST", "/v1/policies", key, json=POLICY)
    await wait(api, key, published["id"], {"email": 1})
    sink.clear()

    status, bad = await api.call("POST", f"/v1/policies/{published['id']}/repeal", key,
                                 json={"reason": "x", "repealed_on": "2999-01-01"})
    assert status == 422 and bad["errors"][0]["field"] == "repealed_on"
    status, repealed = await api.call("POST", f"/v1/policies/{published['id']}/repeal", key,
                                      json={"reason": "已被《关于稳就业的新措施》取代"})
    assert status == 202, repealed
    today = datetime.now(LOCAL_ZONE).date()
    assert repealed["status"] == "repealed" and repealed["repealed_on"] == today.isoformat()

    await wait(api, key, published["id"], {"email": 1}, notice=1)
    [mail] = sink.messages()
    subject, text = text_of(mail.data)
    assert mail.rcpt_tos == (told["email"],) and "废止" in subject
    assert "废止原因：已被《关于稳就业的新措施》取代" in text and f"废止日期：{today.year}年{today.month}月{today.day}日" in text

    status, page = await api.call("GET", f"/p/{published['id']}")
    assert status == 200 and "已废止 · No longer in force" in page
    assert f"本政策自 {today.isoformat()} 起废止" in page and "已被《关于稳就业的新措施》取代" in page

    status, again = await api.call("POST", f"/v1/policies/{published['id']}/repeal", key, json={"reason": "再次"})
    assert status == 409 and "is repealed" in again["detail"]
    status, revise = await api.call("POST", f"/v1/policies/{published['id']}/revise", key, json={"title": "新"})
    assert status == 409


async def test_expiry_lapses_by_the_cron_and_tells_unless_turned_off(
    api: Api, workers: Workers, sink: SmtpSink, svc: Services
) -> None:
    key = (await api.department())["api_key"]
    told = await subscriber(api, key, 1)
    today = datetime.now(LOCAL_ZONE).date()
    workers.start()
    status, told_policy = await api.call("POST", "/v1/policies", key, json={**POLICY, "expires_on": today.isoformat()})
    status, quiet_policy = await api.call("POST", "/v1/policies", key, json={
        **POLICY, "title": "不通知失效的政策", "expires_on": today.isoformat(), "notify_on_lapse": False})
    assert status == 202 and quiet_policy["notify_on_lapse"] is False
    for p in (told_policy, quiet_policy):
        await wait(api, key, p["id"], {"email": 1})
    sink.clear()

    assert await run_lapse(svc) == 0  # its last day is not over yet
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), LOCAL_ZONE) + timedelta(minutes=5)
    assert await run_lapse(svc, tomorrow) == 2
    assert await run_lapse(svc, tomorrow) == 0  # a second run (another worker's) does nothing

    await wait(api, key, told_policy["id"], {"email": 1}, notice=1)
    [mail] = sink.messages()
    subject, text = text_of(mail.data)
    assert mail.rcpt_tos == (told["email"],) and "失效" in subject
    assert f"有效期已于{today.year}年{today.month}月{today.day}日届满，现已失效" in text
    quiet = await policy(api, key, quiet_policy["id"])
    assert quiet["status"] == "lapsed" and quiet["notices"] == []
    status, page = await api.call("GET", f"/p/{told_policy['id']}")
    assert status == 200 and "已失效 · No longer in force" in page and f"有效期已于 {today.isoformat()} 届满" in page


async def test_no_notice_for_a_policy_that_reached_no_one(api: Api, svc: Services, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    await subscriber(api, key, 1, audiences={"enterprise": {**enterprise(1)["audiences"]["enterprise"],
                                                            "district": "yuexiu"}})  # not targeted
    status, published = await api.call("POST", "/v1/policies", key, json=POLICY)
    await run_fanout(svc, published["id"])
    assert (await policy(api, key, published["id"]))["status"] == "published"

    status, revised = await api.call("POST", f"/v1/policies/{published['id']}/revise", key, json={"title": "改"})
    assert status == 202 and revised["revision"] == 2 and revised["notices"] == []
    status, repealed = await api.call("POST", f"/v1/policies/{published['id']}/repeal", key, json={"reason": "废"})
    assert status == 202 and repealed["status"] == "repealed" and repealed["notices"] == []
    async with svc.db.read() as conn:
        rows = (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar_one()
    assert rows == 0 and sink.count() == 0

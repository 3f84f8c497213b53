"""Digests: daily and weekly subscribers get their waiting policies in one message per channel at the
digest time, once; the cron function is driven here with a clock, against the real SMTP sink, the
SMS stand-in and both databases."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from pushsvc.core.clock import now
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.delivery.digest import run_digest
from pushsvc.delivery.fanout import run_fanout
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.services import Services
from pushsvc.settings import Settings
from pushsvc.store.deliveries import stale_work
from pushsvc.store.schema import deliveries
from tests.conftest import Api
from tests.test_api_foundation import POLICY
from tests.test_lifecycle import gateway, services_for, settings_env, stub_messages, subscriber, svc  # noqa: F401

TITLES = ["关于稳岗扩岗的若干措施", "关于小微企业社保补贴的通知", "关于创业担保贷款贴息的办法"]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), LOCAL_ZONE)


def next_day(after: date, monday: bool) -> date:
    """The first day after `after` that is (or is not) a Monday, the default weekly digest day."""
    day = after + timedelta(days=1)
    while (day.isoweekday() == 1) != monday:
        day += timedelta(days=1)
    return day


async def publish(api: Api, svc: Services, key: str, title: str, channels: list[str]) -> int:
    status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": title, "channels": channels})
    assert status == 202, body
    await run_fanout(svc, body["id"])  # the fan-out job, in this process
    return body["id"]


async def ledger(svc: Services, subscriber_id: int) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        rows = await conn.execute(sa.select(deliveries).where(deliveries.c.subscriber_id == subscriber_id)
                                  .order_by(deliveries.c.policy_id))
        return [dict(r) for r in rows.mappings()]


async def test_a_digest_lists_the_period_once_weekly_waits_for_monday(
    api: Api, svc: Services, sink: SmtpSink
) -> None:
    key = (await api.department())["api_key"]
    daily = await subscriber(api, key, 1, frequency="daily")
    weekly = await subscriber(api, key, 2, frequency="weekly")
    ids = [await publish(api, svc, key, title, ["email"]) for title in TITLES]
    status, figures = await api.call("GET", f"/v1/policies/{ids[0]}", key)
    assert figures["deliveries"]["email"]["held"] == 2 and sink.count() == 0

    today = datetime.now(LOCAL_ZONE).date()
    assert await run_digest(svc, local(today, 23, 59)) == 0  # held since today: tomorrow's digest
    day = next_day(today, monday=False)
    assert await run_digest(svc, local(day, 8, 29)) == 0  # before the digest time
    # Two workers' crons at once: one sends, the other finds the run taken.
    assert sorted(await asyncio.gather(run_digest(svc, local(day, 8, 30)), run_digest(svc, local(day, 8, 30)))) == [0, 1]
    assert await run_digest(svc, local(day, 9, 0)) == 0  # a later run finds nothing left

    [mail] = sink.messages()
    assert mail.rcpt_tos == (daily["email"],)
    msg = email.message_from_bytes(mail.data, policy=email.policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    period = f"{today.year}年{today.month}月{today.day}日"
    if day - today > timedelta(days=1):  # a Monday in between: the period runs to the day before
        end = day - timedelta(days=1)
        period += f"至{end.year}年{end.month}月{end.day}日"
    assert msg["Subject"] == f"每日政策摘要：{period}（3项）"
    assert f"以下是{period}发布的、与您相关的3项政策（每日摘要）：" in text
    for n, (policy_id, title) in enumerate(zip(ids, TITLES), start=1):
        assert f"{n}. 《{title}》" in text and f"/p/{policy_id}" in text
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    rows = await ledger(svc, daily["id"])
    assert [r["status"] for r in rows] == ["sent"] * 3 and {r["provider_ref"] for r in rows} == {msg["Message-ID"]}
    assert [r["status"] for r in await ledger(svc, weekly["id"])] == ["digest"] * 3  # untouched on a non-Monday

    digest_url = next(line.split("：", 1)[1] for line in text.splitlines() if line.startswith("在网页上查看全部"))
    status, page = await api.call("GET", urlsplit(digest_url).path)
    assert status == 200 and all(title in page for title in TITLES) and "每日政策摘要" in page
    async with api.session.get(api.base + urlsplit(digest_url).path + "/qr.png") as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
    status, _ = await api.call("GET", "/d/forged.token")
    assert status == 404

    monday = next_day(day, monday=True)
    assert await run_digest(svc, local(monday, 8, 35)) == 1
    weekly_mail = sink.messages()[-1]
    assert weekly_mail.rcpt_tos == (weekly["email"],) and sink.count() == 2
    weekly_msg = email.message_from_bytes(weekly_mail.data, policy=email.policy.default)
    assert weekly_msg["Subject"].startswith("每周政策摘要：") and weekly_msg["Subject"].endswith("（3项）")

    # An empty period sends nothing.
    assert await run_digest(svc, local(monday + timedelta(days=1), 9)) == 0 and sink.count() == 2


async def test_an_sms_digest_waits_for_the_end_of_quiet_hours(
    api: Api, settings: Settings, gateway: SmsGatewayStub  # noqa: F811
) -> None:
    key = (await api.department())["api_key"]
    late_riser = await subscriber(api, key, 3, frequency="daily", channels=["sms"],
                                  quiet_hours={"start": "08:00", "end": "10:00"})
    async with services_for(settings.model_copy(update={"sms_url": gateway.url})) as svc:  # noqa: F811
        for title in TITLES + ["关于高校毕业生就业补贴的通知"]:
            await publish(api, svc, key, title, ["sms"])
        day = next_day(datetime.now(LOCAL_ZONE).date(), monday=False)
        assert await run_digest(svc, local(day, 9, 0)) == 0
        assert {(r["status"], r["attempts"]) for r in await ledger(svc, late_riser["id"])} == {("digest", 0)}
        assert await run_digest(svc, local(day, 10, 5)) == 1
        rows = await ledger(svc, late_riser["id"])
    [sms] = await stub_messages(api, gateway)
    assert sms["numbers"] == [late_riser["phone"][3:]]
    assert sms["text"].startswith("【广州政务公开】每日政策摘要")
    assert "1.《关于稳岗扩岗的若干措施》" in sms["text"] and "另有1项" in sms["text"] and "/s/" in sms["text"]
    assert [r["status"] for r in rows] == ["sent"] * 4 and len({r["provider_ref"] for r in rows}) == 1


async def test_a_digest_failing_for_now_waits_for_its_backoff(api: Api, settings: Settings, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    daily = await subscriber(api, key, 4, frequency="daily")
    # Due at any time of day; a backoff (10 to 20 minutes) longer than the cron's 5-minute period.
    slow = settings.model_copy(update={"digest_time": "00:00", "retry_base_seconds": 1200.0,
                                       "retry_max_seconds": 3600.0})
    async with services_for(slow) as svc:  # noqa: F811
        policy_id = await publish(api, svc, key, TITLES[0], ["email"])
        async with svc.db.write() as conn:  # published two days ago: in today's digest
            await conn.execute(sa.update(deliveries).where(deliveries.c.policy_id == policy_id)
                               .values(created_at=now() - timedelta(days=2)))
        sink.set_faults(temp_fail_for=3600)
        failed_at = now()
        assert await run_digest(svc, failed_at) == 0
        [row] = await ledger(svc, daily["id"])
        assert (row["status"], row["attempts"]) == ("digest", 1)
        assert failed_at + timedelta(seconds=600) <= row["next_attempt_at"] <= now() + timedelta(seconds=1200)
        async with svc.db.read() as conn:  # not the sweeper's (nor a deliver job's) to send
            assert [w async for w in stale_work(conn, row["next_attempt_at"] + timedelta(days=1), failed_at)] == []

        sink.set_faults()
        assert await run_digest(svc, failed_at + timedelta(minutes=5)) == 0  # the next run: too early
        assert sink.count() == 0 and [r["attempts"] for r in await ledger(svc, daily["id"])] == [1]
        assert await run_digest(svc, row["next_attempt_at"]) == 1
        [row] = await ledger(svc, daily["id"])
    assert (row["status"], row["attempts"]) == ("sent", 2) and sink.count() == 1
    assert sink.messages()[0].rcpt_tos == (daily["email"],)

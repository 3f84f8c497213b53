"""Daily quotas (issue 16, item 8): SMS per number and WeChat template messages per account. A
message beyond a quota, or one the provider refuses because its own quota is spent (WeChat 45009,
a number's daily limit at Aliyun or Tencent), waits `held` until local midnight with its attempts
unchanged. Real workers and stand-ins over HTTP, on every test database; the counter on its own
against Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc import redis_keys
from pushsvc.channels.sms.providers.aliyun import number_status
from pushsvc.core.clock import now
from pushsvc.core.quotas import quota_day, quota_reset
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.ratelimit import DailyQuota
from pushsvc.store.schema import deliveries
from tests import test_sms as sms
from tests import test_wechat as wx
from tests.conftest import Api, Workers, eventually

HELD_FOR_THE_DAY = ("held",)


@pytest.fixture
def settings_env(settings_env: dict[str, str], stub: wx.Stub, robot_window: float) -> dict[str, str]:
    return settings_env | wx.wechat_env(stub, robot_window) | {
        "PUSHSVC_SMS_SECRET": sms.SMS_SECRET, "PUSHSVC_SMS_SIGN_NAME": sms.SIGN}


# The stand-ins and helpers of the SMS and WeChat tests.
robot_window = wx.robot_window
stub = wx.stub
gateway = sms.gateway


async def ledger(settings_env: dict[str, str], policy_id: int) -> list[Any]:
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(
                sa.select(deliveries.c.status, deliveries.c.attempts, deliveries.c.next_attempt_at, deliveries.c.error)
                .where(deliveries.c.policy_id == policy_id).order_by(deliveries.c.id))).all())
    finally:
        await engine.dispose()


def utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


async def settled_with_held(api: Api, key: str, policy_id: int, sent: int, held: int,
                            channel: str) -> dict[str, Any] | None:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    c = body["deliveries"][channel]
    return c if c["sent"] + c.get("delivered", 0) == sent and c["held"] == held and c["queued"] == c["sending"] == 0 \
        else None


def assert_held_until_midnight(rows: list[Any], held: int) -> None:
    waiting = [r for r in rows if r.status == "held"]
    assert len(waiting) == held, rows
    reset = quota_reset(now())
    assert all(utc(r.next_attempt_at) == reset for r in waiting), (waiting, reset)
    assert all(r.attempts == 0 for r in waiting)  # no attempt spent


async def test_sms_number_quota_holds_the_rest_until_midnight(
    api: Api, workers: Workers, gateway: SmsGatewayStub, settings_env: dict[str, str]
) -> None:
    key = (await api.department())["api_key"]
    await sms.seed(api, key, 4)
    workers.start(PUSHSVC_SMS_URL=gateway.url, PUSHSVC_SMS_DAILY_PER_NUMBER="1", PUSHSVC_QUIET_HOURS="00:00-00:00")
    status, first = await api.call("POST", "/v1/policies", key, json=sms.SMS_POLICY)
    assert status == 202, first
    await eventually(lambda: sms.settled(api, key, first["id"], 4, ("delivered",)), timeout=60)

    status, second = await api.call("POST", "/v1/policies", key, json={**sms.SMS_POLICY, "title": "第二项政策"})
    assert status == 202, second
    await eventually(lambda: settled_with_held(api, key, second["id"], 0, 4, "sms"), timeout=60)
    assert_held_until_midnight(await ledger(settings_env, second["id"]), 4)
    numbers = [n for m in await sms.stub_get(api, gateway, "/_stub/messages") for n in m["numbers"]]
    assert sorted(numbers) == sorted(sms.phone(i)[3:] for i in range(4))  # one message each, the first


async def test_wechat_account_quota_holds_the_rest_until_midnight(
    api: Api, workers: Workers, stub: wx.Stub, settings_env: dict[str, str]
) -> None:
    key = (await api.department())["api_key"]
    openids = [f"openid_quota_{i:02d}" for i in range(5)]
    await wx.seed(api, key, [(o, "", "zh-CN") for o in openids])
    workers.start(PUSHSVC_WECHAT_TEMPLATE_DAILY="3")
    policy = await wx.publish(api, key)
    await eventually(lambda: settled_with_held(api, key, policy["id"], 3, 2, "wechat"), timeout=60)
    assert_held_until_midnight(await ledger(settings_env, policy["id"]), 2)
    assert len(await stub.messages()) == 3
    assert (await stub.stats())["requests"] == 3  # the platform was not called in vain


async def test_45009_from_the_platform_holds_until_midnight_not_failed(
    api: Api, workers: Workers, stub: wx.Stub, settings_env: dict[str, str]
) -> None:
    key = (await api.department())["api_key"]
    openids = [f"openid_spent_{i:02d}" for i in range(12)]
    await wx.seed(api, key, [(o, "", "zh-CN") for o in openids])
    await stub.faults(template_quota=2)  # the platform's count: two more today
    workers.start()
    policy = await wx.publish(api, key)
    await eventually(lambda: settled_with_held(api, key, policy["id"], 2, 10, "wechat"), timeout=60)
    rows = await ledger(settings_env, policy["id"])
    assert_held_until_midnight(rows, 10)
    assert not any(r.status == "failed" for r in rows)
    # Ours is spent too: the other workers' lanes stop calling (at most the calls already out).
    stats = await stub.stats()
    assert 1 <= stats["errcodes"].get("45009", 0) <= 8  # PUSHSVC_WECHAT_CONNECTIONS lanes
    redis = Redis.from_url(settings_env["PUSHSVC_REDIS_URL"])
    try:
        spent = await redis.get(redis_keys.daily_quota("wechat-template", quota_day(now()), wx.APPID))
    finally:
        await redis.aclose()
    assert int(spent) == 100_000


# -- the counter and the providers' codes, on their own --------------------------------------

@pytest.fixture
async def quota(redis_url: str) -> AsyncIterator[DailyQuota]:
    q = DailyQuota(redis_url, "test", 2)
    await q.start()
    yield q
    await q.close()


async def test_daily_quota_takes_gives_back_and_spends(quota: DailyQuota) -> None:
    taken, reset = await quota.take(["a", "a", "b", "a"])
    assert taken == [True, True, True, False] and reset == quota_reset(now())
    await quota.give_back(["a"])
    assert (await quota.take(["a", "a"]))[0] == [True, False]
    assert await quota.spend(["b"]) == reset
    assert (await quota.take(["b", "c"]))[0] == [False, True]
    unlimited = DailyQuota(quota._url, "test", 0)  # no quota: everything goes, nothing is counted
    await unlimited.start()
    assert (await unlimited.take(["a"] * 5))[0] == [True] * 5


def test_quota_resets_at_local_midnight() -> None:
    # 23:30 in Guangzhou is 15:30 UTC; 00:30 the next day there is 16:30 UTC.
    assert quota_reset(datetime(2026, 12, 5, 15, 30, tzinfo=timezone.utc)) == datetime(2026, 12, 5, 16, 0,
                                                                                        tzinfo=timezone.utc)
    assert quota_reset(datetime(2026, 12, 5, 16, 30, tzinfo=timezone.utc)) == datetime(2026, 12, 6, 16, 0,
                                                                                        tzinfo=timezone.utc)
    assert quota_day(datetime(2026, 12, 5, 16, 30, tzinfo=timezone.utc)) == "20261206"


def test_provider_limits_for_a_number() -> None:
    assert number_status("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10") == "held"
    assert number_status("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1") == "retry"
    assert number_status("isv.DAY_LIMIT_CONTROL", "触发日发送限额") == "held"
    assert number_status("isv.MOBILE_NUMBER_ILLEGAL", "") == "failed"

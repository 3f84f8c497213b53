"""Several SMS providers: traffic follows the weights, a provider that fails loses its share to the
next, every number is sent exactly once, and every row records the provider that took it. Real
workers and both cloud stand-ins over HTTP, on every test database."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from pushsvc.channels.sms.providers.base import callback_path
from pushsvc.channels.sms.providers.failover import Health, build_routes, order, parse_routes
from pushsvc.dev.stubs.sms.aliyun import AliyunSmsStub
from pushsvc.dev.stubs.sms.tencent import TencentSmsStub
from pushsvc.settings import Settings
from tests import test_admin_browser as admin
from tests import test_sms_aliyun as ali
from tests import test_sms_tencent as ten
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.console_helpers import make_staff, signed_in
from tests.test_reports import report
from tests.test_sms import SMS_POLICY, seed, settled, stub_get, stub_post
from tests.test_sms_aliyun import _rows

# 2,000 here; the 20,000 run of issue 16 is the same test with TEST_SMS_FAILOVER_NUMBERS=20000
# (timed in the report and bench/README: too slow for every run of the suite on this machine).
N = int(os.environ.get("TEST_SMS_FAILOVER_NUMBERS", "2000"))


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, **ali.ENV, **ten.ENV, "PUSHSVC_SMS_PROVIDERS": "aliyun:1,tencent:1",
            "PUSHSVC_SMS_CALLBACK_TOKEN": "cb-token-both-0123"}


def test_routes_and_order(settings: Settings) -> None:
    assert parse_routes(" aliyun:3, tencent") == [("aliyun", 3), ("tencent", 1)]
    for bad in ("aliyun:3,aliyun:1", "twilio:1", "aliyun;tencent", ""):
        with pytest.raises(ValueError):
            parse_routes(bad)
    routes = build_routes(settings.model_copy(update={"sms_providers": "aliyun:3,tencent:1"}))
    rng = random.Random(7)
    firsts = Counter(order(routes, {}, rng)[0].name for _ in range(4000))
    assert 2800 < firsts["aliyun"] < 3200  # traffic follows the weights, 3 to 1
    # An unhealthy provider loses its share but stays the last resort.
    assert [p.name for p in order(routes, {"aliyun": False}, rng)] == ["tencent", "aliyun"]


async def test_health_is_shared_through_redis(settings: Settings) -> None:
    s = settings.model_copy(update={"sms_failover_errors": 3, "sms_failover_slow_seconds": 0.5})
    one, other = Health(s), Health(s)  # two workers
    await one.start()
    await other.start()
    try:
        for _ in range(3):
            await one.record("aliyun", 100, 0, True, 0.1)
        for _ in range(25):  # mostly slow
            await one.record("tencent", 100, 100, False, 0.9 if _ % 4 else 0.1)
        assert await other.healthy(["aliyun", "tencent", "generic"]) == {"aliyun": False, "tencent": False,
                                                                          "generic": True}
        redis = Redis.from_url(s.redis_url)
        fields = {k.decode(): int(v) for k, v in (await redis.hgetall("pushsvc:metrics")).items()
                  if k.startswith(b"pushsvc_sms_provider")}
        await redis.aclose()
        assert fields["pushsvc_sms_provider_requests|aliyun|error"] == 3
        assert fields["pushsvc_sms_provider_messages|tencent|taken"] == 2500
    finally:
        await one.close()
        await other.close()


@pytest.fixture
async def clouds(api: Api, settings_env: dict[str, str]) -> AsyncIterator[tuple[AliyunSmsStub, TencentSmsStub]]:
    token = settings_env["PUSHSVC_SMS_CALLBACK_TOKEN"]
    a = AliyunSmsStub(ali.AK, ali.AK_SECRET, api.base + callback_path("aliyun", token, "report"),
                      api.base + callback_path("aliyun", token, "reply"), 0.5, ali.TEMPLATE)
    t = TencentSmsStub(ten.SECRET_ID, ten.SECRET_KEY, api.base + callback_path("tencent", token, "report"),
                       api.base + callback_path("tencent", token, "reply"), 0.5, ten.TEMPLATE)
    await a.start()
    await t.start()
    yield a, t
    await a.stop()
    await t.stop()


def taken(messages: list[dict[str, Any]]) -> list[str]:
    return [r["phone_number"] for m in messages for r in m["results"] if r.get("message_id")]


async def test_one_fails_midway_every_number_once(api: Api, workers: Workers,
                                                  clouds: tuple[AliyunSmsStub, TencentSmsStub],
                                                  settings_env: dict[str, str]) -> None:
    aliyun, tencent = clouds
    department = await api.department()
    key = department["api_key"]
    await seed(api, key, N)
    # Paced, so that the fan-out is still under way when Aliyun starts failing.
    workers.start(PUSHSVC_SMS_ALIYUN_URL=aliyun.url, PUSHSVC_SMS_TENCENT_URL=tencent.url,
                  PUSHSVC_SMS_REQUESTS_PER_SECOND="4", PUSHSVC_FANOUT_BATCH_SIZE="500")
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    assert status == 202, policy
    await eventually(lambda: _requests(api, aliyun, 3), timeout=max(60, N / 100))
    await stub_post(api, aliyun, "/_stub/faults", {"server_error": 1.0})
    final = await eventually(lambda: settled(api, key, policy["id"], N, ("delivered",)), timeout=max(180, N / 20))
    assert final["failed"] == 0

    by_aliyun, by_tencent = taken(await stub_get(api, aliyun, "/_stub/messages")), \
        taken(await stub_get(api, tencent, "/_stub/messages"))
    everyone = Counter(by_aliyun + by_tencent)
    assert len(everyone) == N and max(everyone.values()) == 1, everyone.most_common(3)  # each number once
    assert by_aliyun and by_tencent and len(by_tencent) > N / 2  # Tencent took over
    refused = (await stub_get(api, aliyun, "/_stub/stats"))["refused_requests"]
    assert refused >= 1
    # Each row names the provider that took it.
    rows = await _rows(settings_env)
    took = {r.phone[3:]: r.provider for r in rows}
    assert {n for n, p in took.items() if p == "aliyun"} == set(by_aliyun)
    assert {n for n, p in took.items() if p == "tencent"} == set(by_tencent)

    # The figures per provider: the report's, the admin page's and the console's.
    providers = {p["provider"]: p for p in (await report(api, key))["sms_providers"]}
    assert sorted(providers) == ["aliyun", "tencent"]
    for name, numbers in (("aliyun", by_aliyun), ("tencent", by_tencent)):
        assert providers[name]["messages"] == providers[name]["delivered"] == len(numbers)
        assert providers[name]["failed"] == 0 and providers[name]["delivery_time"]["median_seconds"] is not None
    html = await admin_page(api)
    table = html[html.index('id="sms-providers"'):]
    assert "Aliyun SMS" in table and "Tencent Cloud SMS" in table and f'<td class="num">{len(by_tencent)}</td>' in table
    staff = await make_staff(api, department["id"], "drafter")
    console = await signed_in(api, staff["username"], staff["password"])
    try:
        status, html, _ = await console.get("/console/figures?lang=en")
    finally:
        await console.close()
    assert status == 200
    assert f'<td class="num">{len(by_aliyun)}</td>' in html[html.index('id="sms-providers"'):]


async def _requests(api: Api, stub: AliyunSmsStub, n: int) -> bool:
    return (await stub_get(api, stub, "/_stub/stats"))["requests"] >= n


async def admin_page(api: Api) -> str:
    """The admin page in English, signed in with the admin token."""
    status, html, resp = await admin.get(api, "/admin")
    browser = {admin.csrf.COOKIE: resp.cookies[admin.csrf.COOKIE].value}
    status, _, jar = await admin.post(api, "/admin/login", {"token": ADMIN, "lang": "en", admin.csrf.FIELD: admin.csrf_of(html)},
                                      browser)
    assert status == 303
    status, html, _ = await admin.get(api, "/admin?lang=en", {admin.SESSION_COOKIE: jar[admin.SESSION_COOKIE].value})
    assert status == 200
    return html

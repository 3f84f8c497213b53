"""Limits shared by every process through Redis: a department's key (429 with Retry-After), the
public pages per client address, and the providers' per-second paces as the stand-ins see them
with two worker processes sending at once. (The WeCom robots' 20 a minute with two workers is
tests/test_wechat.py::test_two_workers_sharing_a_robot_key_never_exceed_it.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from pushsvc.app import build_app
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, seed
from tests.test_sms import SMS_POLICY, SMS_SECRET, settled
from tests.test_sms import seed as seed_phones
from tests.test_wechat import (  # noqa: F401  (fixtures)
    MESSAGE,
    at_most_per_window,
    both_delivered,
    channel_for,
    recipient,
    robot_window,
    start_two,
    stub,
)

SMTP_PER_SECOND = 5
SMS_PER_SECOND = 2
TEMPLATES_PER_SECOND = 4


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_QUIET_HOURS": "00:00-00:00",
            "PUSHSVC_SMTP_PER_SECOND": str(SMTP_PER_SECOND),
            "PUSHSVC_SMS_REQUESTS_PER_SECOND": str(SMS_PER_SECOND)}


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Api]:
    """The API with small request limits, behind one proxy."""
    strict = settings.model_copy(update={"api_requests_per_minute": 5, "page_requests_per_minute": 3, "proxy_hops": 1})
    server = TestServer(build_app(strict), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/"))
    await server.close()


async def test_a_department_key_over_its_limit_gets_429_with_retry_after(limited: Api) -> None:
    first = (await limited.department("市人社局"))["api_key"]
    second = (await limited.department("市税务局", ["tax-administration"]))["api_key"]
    for _ in range(5):
        assert (await limited.call("GET", "/v1/policies/999999", first))[0] == 404
    async with limited.session.get(limited.base + "/v1/policies/999999",
                                   headers={"Authorization": f"Bearer {first}"}) as resp:
        assert resp.status == 429
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        body = await resp.json(content_type=None)
    assert body["status"] == 429 and "5 requests a minute" in body["detail"]
    assert (await limited.call("GET", "/v1/policies/999999", second))[0] == 404  # a key of its own
    for _ in range(6):  # the admin token has a limit of its own, none by default
        assert (await limited.call("GET", "/v1/subscribers/999999", ADMIN))[0] == 404
    assert (await limited.call("GET", "/healthz"))[0] == 200


async def test_public_pages_are_limited_per_client_address(limited: Api) -> None:
    def page(address: str, claimed: str = "") -> Any:
        # Our one proxy appends the address it was called from to whatever the client claimed.
        forwarded = f"{claimed}, {address}" if claimed else address
        return limited.session.get(limited.base + "/p/999999", headers={"X-Forwarded-For": forwarded})

    for _ in range(3):
        async with page("203.0.113.7") as resp:
            assert resp.status == 404
    async with page("203.0.113.7", claimed="198.51.100.1") as resp:  # claiming another address is no way out
        assert resp.status == 429 and resp.content_type == "text/html"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert "Too many requests" in await resp.text()
    async with page("203.0.113.8") as resp:  # another address behind the same proxy
        assert resp.status == 404
    for path in ("/healthz", "/metrics", "/v1/policies/1"):  # not pages: never limited per address
        async with limited.session.get(limited.base + path, headers={"X-Forwarded-For": "203.0.113.7"}) as resp:
            assert resp.status != 429, path


def at_least_a_second_per(limit: int, times: list[float]) -> bool:
    """The pace held: no second holds more than `limit` arrivals, so they took their time."""
    times = sorted(times)
    return at_most_per_window(times, limit, 1.0) and times[-1] - times[0] >= (len(times) - 1) // limit


async def test_smtp_messages_per_second_hold_across_two_workers(api: Api, workers: Workers, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 15)
    start_two(workers, batch_size=5)
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy
    final = await eventually(lambda: _done(api, key, policy["id"], 15), timeout=60)
    assert final["sent"] == 15
    arrivals = [m.received_at.timestamp() for m in sink.messages()]
    assert len(arrivals) == 15 and at_least_a_second_per(SMTP_PER_SECOND, arrivals)
    assert both_delivered(workers)


async def test_sms_requests_per_second_hold_across_two_workers(api: Api, workers: Workers) -> None:
    gateway = SmsGatewayStub(SMS_SECRET, "PUSHSVC_POLICY", f"{api.base}/v1/receipts/sms", receipt_delay=0.1)
    await gateway.start()
    try:
        key = (await api.department())["api_key"]
        await seed_phones(api, key, 12)
        for _ in range(2):  # batches of 3 numbers: four requests
            workers.start(PUSHSVC_SMS_URL=gateway.url, PUSHSVC_FANOUT_BATCH_SIZE="3", PUSHSVC_WORKER_MAX_JOBS="1")
        status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
        assert status == 202, policy
        await eventually(lambda: settled(api, key, policy["id"], 12, ("sent", "delivered")), timeout=60)
        times = [datetime.fromisoformat(m["received_at"]).timestamp() for m in gateway.messages]
        assert len(times) == 4 and at_least_a_second_per(SMS_PER_SECOND, times)
        assert both_delivered(workers)
    finally:
        await gateway.stop()


async def test_wechat_template_calls_per_second(stub: Any, channel_for: Any) -> None:
    channel = await channel_for(wechat_template_per_second=str(TEMPLATES_PER_SECOND))
    outcomes = await channel.send(MESSAGE, [recipient(n, openid=f"openid_paced_{n:02d}") for n in range(10)])
    assert {o.status for o in outcomes} == {"sent"}
    arrivals = [m["at"] for m in await stub.messages()]
    assert len(arrivals) == 10 and at_least_a_second_per(TEMPLATES_PER_SECOND, arrivals)

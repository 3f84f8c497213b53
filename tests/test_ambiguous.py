"""Ambiguous sends (issue 14, reproduction 4): the SMS gateway takes a request and then times out.
The worker asks the gateway by the request's out_id instead of sending again; when even the query
goes unanswered the rows wait as `unknown` until a receipt or the sweeper's later query settles
them. Real workers, the stand-in gateway over HTTP, every test database."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from tests.conftest import Api, Workers, eventually
from tests.test_sms import SMS_POLICY, SMS_SECRET, accepted, gateway, seed, settings_env, settled, stub_get, stub_post  # noqa: F401  (gateway, settings_env: the SMS stub and its secret, no quiet hours)

N = 60
# Requests of 20 numbers; the worker gives up waiting for a reply after 1 s.
FAST = {"PUSHSVC_FANOUT_BATCH_SIZE": "20", "PUSHSVC_SMS_TIMEOUT": "1", "PUSHSVC_MAX_ATTEMPTS": "12"}


@pytest.fixture
async def late_receipts(api: Api, request: pytest.FixtureRequest) -> AsyncIterator[SmsGatewayStub]:
    """A gateway whose receipts come long after the worker gave up waiting (`delay` seconds, by
    the test's parameter): the rows are seen `unknown` first."""
    stub = SmsGatewayStub(SMS_SECRET, "PUSHSVC_POLICY", f"{api.base}/v1/receipts/sms", receipt_delay=request.param)
    await stub.start()
    yield stub
    await stub.stop()


async def sent_once(api: Api, gw: SmsGatewayStub) -> None:
    """Every number in exactly one request the gateway took: nothing was asked for twice."""
    messages = await stub_get(api, gw, "/_stub/messages")
    requested = Counter(n for m in messages for n in m["numbers"])
    assert len(requested) == N and max(requested.values()) == 1, requested.most_common(3)
    assert len(accepted(messages)) == N


async def test_taken_then_timed_out_is_found_by_the_query(api: Api, workers: Workers,
                                                          gateway: SmsGatewayStub) -> None:  # noqa: F811
    key = (await api.department())["api_key"]
    await seed(api, key, N)
    # Some requests taken and never answered, some never taken (the query says so: sent again).
    await stub_post(api, gateway, "/_stub/faults", {"accept_timeout": 0.4, "timeout": 0.2})
    workers.start(PUSHSVC_SMS_URL=gateway.url, **FAST)
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    assert status == 202, policy
    final = await eventually(lambda: settled(api, key, policy["id"], N, ("delivered",)), timeout=90)
    assert final["failed"] == 0 and final["unknown"] == 0
    await sent_once(api, gateway)


@pytest.mark.parametrize("late_receipts", [8], indirect=True)
async def test_unanswered_query_leaves_unknown_until_a_receipt(
    api: Api, workers: Workers, late_receipts: SmsGatewayStub
) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, N)
    await stub_post(api, late_receipts, "/_stub/faults", {"accept_timeout": 1.0, "query_error": 1.0})
    workers.start(PUSHSVC_SMS_URL=late_receipts.url, **FAST)
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    counts = await eventually(lambda: settled(api, key, policy["id"], N, ("unknown",)), timeout=30)
    assert counts["failed"] == counts["queued"] == 0
    # The receipts name the request and the number: they settle the rows as any other.
    final = await eventually(lambda: settled(api, key, policy["id"], N, ("delivered",)), timeout=60)
    assert final["failed"] == 0 and final["unknown"] == 0
    await sent_once(api, late_receipts)


@pytest.mark.parametrize("late_receipts", [120], indirect=True)  # no receipt within the test
async def test_the_sweeper_asks_again(api: Api, workers: Workers, late_receipts: SmsGatewayStub) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, N)
    await stub_post(api, late_receipts, "/_stub/faults", {"accept_timeout": 1.0, "query_error": 1.0})
    workers.start(PUSHSVC_SMS_URL=late_receipts.url, **FAST)
    status, policy = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    await eventually(lambda: settled(api, key, policy["id"], N, ("unknown",)), timeout=30)
    await stub_post(api, late_receipts, "/_stub/faults", {})  # the gateway answers queries again
    # Stale after 5 s, a sweep every 5 s: the query finds every number taken, before any receipt.
    counts: dict[str, Any] = await eventually(lambda: settled(api, key, policy["id"], N, ("sent", "delivered")),
                                              timeout=30)
    assert counts["failed"] == counts["unknown"] == 0
    await sent_once(api, late_receipts)

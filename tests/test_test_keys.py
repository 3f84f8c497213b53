"""Test keys and simulated contacts (issue 17): a department tries its integration end to end
(publish, outcomes, signed callbacks) and nothing leaves pushsvc nor shows in its figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_callbacks import FAST, TOKEN, Receiver, enterprise, issue_test_key
from tests.test_metrics import scrape, series

SMS_SECRET = "test-sms-secret-0123456789"
SIMULATED = "simulator.pushsvc.invalid"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # SMS through the stand-in, so that anything leaking would be seen there. Default quiet hours
    # stay: simulated messages do not wait for them.
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_CALLBACK_ALLOW_PRIVATE": "true"}


@pytest.fixture
async def gateway(api: Api) -> AsyncIterator[SmsGatewayStub]:
    stub = SmsGatewayStub(SMS_SECRET, "PUSHSVC_POLICY", f"{api.base}/v1/receipts/sms", receipt_delay=0.1)
    await stub.start()
    yield stub
    await stub.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def subscriber(api: Api, key: str, i: int, external_id: str, **contact: Any) -> int:
    channels = ["email"] if "email" in contact else ["sms"]
    status, body = await api.call("POST", "/v1/subscribers", key, json={
        "name": f"集成测试{i}", **contact, "channels": channels, "domains": ["*"], "audiences": enterprise(i),
        "external_id": external_id})
    assert status == 201, body
    return int(body["id"])


async def ledger(api: Api, key: str, policy_id: int) -> dict[str, Any] | None:
    """The policy's counts once nothing of it is waiting any more."""
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    waiting = sum(c[s] for c in body["deliveries"].values() for s in ("queued", "sending", "held"))
    return body if body["status"] == "published" and waiting == 0 else None


async def test_a_department_integrates_with_a_test_key(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub, receiver: Receiver
) -> None:
    dept = await api.department()
    live = dept["api_key"]
    test = await issue_test_key(api, dept)
    ids = {
        "delivered": await subscriber(api, test, 1, "crm-1", email=f"delivered@{SIMULATED}"),
        "temporary": await subscriber(api, test, 2, "crm-2", email=f"temporary-failure@{SIMULATED}"),
        "permanent": await subscriber(api, test, 3, "crm-3", email=f"permanent-failure@{SIMULATED}"),
        "other e-mail": await subscriber(api, test, 4, "crm-4", email="someone@example.com"),
        "0001": await subscriber(api, test, 5, "crm-5", phone="+86 138 0000 0001"),
        "0002": await subscriber(api, test, 6, "crm-6", phone="+86 138 0000 0002"),
        "0003": await subscriber(api, test, 7, "crm-7", phone="+86 138 0000 0003"),
        "other number": await subscriber(api, test, 8, "crm-8", phone="+86 138 0000 1234"),
    }
    # Matching is city-wide: another department's record is reached too, its reference not shown.
    others = (await api.department("市税务局", ["tax-administration"]))["api_key"]
    ids["another's record"] = await subscriber(api, others, 9, "theirs-9", email="elsewhere@example.com")
    status, _ = await api.call("PUT", "/v1/callback", test, json={"url": receiver.url, "bearer_token": TOKEN})
    assert status == 200
    workers.start(PUSHSVC_SMS_URL=gateway.url, **FAST)

    status, policy = await api.call("POST", "/v1/policies", test, json={**POLICY, "channels": ["email", "sms"]})
    assert status == 202 and policy["test"] is True
    final = await eventually(lambda: ledger(api, test, policy["id"]), timeout=90)
    assert final["test"] is True
    email, sms = final["deliveries"]["email"], final["deliveries"]["sms"]
    assert (email["delivered"], email["failed"], sms["delivered"], sms["failed"]) == (3, 2, 2, 2), final

    # The receiver got every change, signed (checked as it came), in order, with the department's references.
    expected = {("delivered", "sent"), ("delivered", "delivered"), ("temporary", "failed"), ("permanent", "failed"),
                ("other e-mail", "sent"), ("other e-mail", "delivered"), ("0001", "sent"), ("0001", "delivered"),
                ("0002", "failed"), ("0003", "failed"), ("other number", "sent"), ("other number", "delivered"),
                ("another's record", "sent"), ("another's record", "delivered")}
    await eventually(lambda: len(receiver.taken) >= len(expected), timeout=30)
    assert receiver.bad == []
    who = {sid: name for name, sid in ids.items()}
    assert {(who[e["subscriber_id"]], e["status"]) for e in receiver.taken} == expected
    assert len(receiver.taken) == len(expected)
    ids_in_order = [e["id"] for e in receiver.taken]
    assert ids_in_order == sorted(ids_in_order)
    for event in receiver.taken:
        assert event["policy_id"] == policy["id"] and event["notice"] == 0 and event["case_no"] is None
        name = who[event["subscriber_id"]]
        assert event["reference"] == (None if name == "another's record" else f"crm-{list(ids).index(name) + 1}")
        assert event["channel"] == ("sms" if name[0].isdigit() or name == "other number" else "email")
        assert event["status_at"] and (event["error_code"] is not None) == (event["status"] == "failed")
    temporary = next(e for e in receiver.taken if who[e["subscriber_id"]] == "temporary")
    status, rows = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=failed", live)
    assert max(r["attempts"] for r in rows["items"]) > 1 and "gave up" in temporary["error_code"]

    # What the receiver learnt of each person is in the audit log, as a listing's read would be.
    status, audit = await api.call("GET", f"/v1/audit?subscriber_id={ids['0001']}", live)
    assert status == 200 and "deliveries.callback" in {e["action"] for e in audit["items"]}, audit

    # Nothing left pushsvc, and nothing of it counts.
    assert sink.count() == 0
    async with api.session.get(gateway.url + "/_stub/messages") as resp:
        assert await resp.json() == []
    status, report = await api.call("GET", "/v1/reports/department", live)
    assert status == 200 and report["policies"] == []
    assert report["total"]["policies"] == report["total"]["matched"] == report["total"]["messages"]["matched"] == 0
    assert not any(n for d in report["sent_per_day"] for n in d["by_channel"].values())
    assert not list(series(await scrape(api), "pushsvc_deliveries_total"))


async def test_simulated_addresses_with_a_live_key(api: Api, workers: Workers, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    for i, address in enumerate([f"delivered@{SIMULATED}", f"permanent-failure@{SIMULATED}", "real@example.com"]):
        await subscriber(api, key, i, f"r{i}", email=address)
    workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and policy["test"] is False
    final = await eventually(lambda: ledger(api, key, policy["id"]), timeout=60)
    email = final["deliveries"]["email"]
    assert (email["delivered"], email["sent"], email["failed"]) == (1, 1, 1), email
    # Only the real address reached the mail server; the simulated ones were answered before it.
    await eventually(lambda: sink.count() >= 1)
    assert [r for m in sink.messages() for r in m.rcpt_tos] == ["real@example.com"]
    status, report = await api.call("GET", "/v1/reports/department", key)
    assert [p["id"] for p in report["policies"]] == [policy["id"]]

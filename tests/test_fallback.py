"""The fallback channel (issue 17, item 5): an e-mail refused for good by the relay (the SMTP sink)
is tried by SMS at the stand-in gateway for subscribers who allow SMS and have a number; the ledger
shows both rows, linked; no fallback without SMS, none from a fallback, nothing sent twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests import test_sms
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY, enterprise
from tests.test_lifecycle import stub_messages
from tests.test_sms import SIGN, SMS_SECRET, stub_post

gateway = test_sms.gateway  # the SMS stand-in (a fixture)
FALLBACK = {**POLICY, "channels": ["email"], "fallback": {"email": "sms"}}
BOTH = ["email", "sms"]


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # No quiet hours: the fallback SMS goes out whatever the time of day. One attempt: a refusal is final.
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_SMS_SIGN_NAME": SIGN,
            "PUSHSVC_QUIET_HOURS": "00:00-00:00"}


async def subscribe(api: Api, key: str, n: int, channels: list[str]) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(n, channels=channels))
    assert status == 201, body
    return body


async def ledger(api: Api, key: str, policy_id: int) -> list[dict[str, Any]]:
    status, page = await api.call("GET", f"/v1/policies/{policy_id}/deliveries", key)
    assert status == 200, page
    return page["items"]  # type: ignore[no-any-return]


def numbers(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(n for m in messages for n in m["numbers"])


@pytest.mark.parametrize(("fallback", "field"), [
    ({"email": "email"}, "fallback.email"),
    ({"wechat": "sms"}, "fallback.wechat"),  # not one of the policy's channels
    ({"email": "fax"}, "fallback.email"),
    ({"email": 3}, "fallback.email"),
    ([["email", "sms"]], "fallback"),
])
async def test_a_bad_fallback_is_422_naming_it(api: Api, fallback: Any, field: str) -> None:
    key = (await api.department())["api_key"]
    status, body = await api.call("POST", "/v1/policies", key, json={**FALLBACK, "fallback": fallback})
    assert status == 422 and [e["field"] for e in body["errors"]] == [field], body
    status, page = await api.call("GET", "/v1/policies", key)
    assert status == 200 and page["items"] == []  # nothing stored


async def test_a_refused_email_falls_back_to_sms_once_and_linked(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub
) -> None:
    key = (await api.department())["api_key"]
    falls = await subscribe(api, key, 1, BOTH)  # refused by e-mail, allows SMS: falls back
    no_sms = await subscribe(api, key, 2, ["email"])  # refused, SMS not allowed: no fallback
    fine = await subscribe(api, key, 3, BOTH)  # e-mail accepted: nothing more
    sink.set_faults(reject=[falls["email"], no_sms["email"]])
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, policy = await api.call("POST", "/v1/policies", key, json=FALLBACK)
    assert status == 202 and policy["fallback"] == {"email": "sms"}, policy

    async def settled() -> list[dict[str, Any]]:
        rows = await ledger(api, key, policy["id"])
        done = [r for r in rows if r["status"] in ("sent", "delivered", "failed")]
        return rows if len(done) == 4 else []

    rows = await eventually(settled)
    by = {(r["subscriber_id"], r["channel"]): r for r in rows}
    assert set(by) == {(falls["id"], "email"), (falls["id"], "sms"), (no_sms["id"], "email"), (fine["id"], "email")}
    assert by[(falls["id"], "email")]["status"] == "failed" and by[(no_sms["id"], "email")]["status"] == "failed"
    assert by[(falls["id"], "sms")]["fallback_of"] == by[(falls["id"], "email")]["id"]
    assert by[(falls["id"], "sms")]["status"] in ("sent", "delivered")
    assert all(r["fallback_of"] is None for key_, r in by.items() if key_ != (falls["id"], "sms"))
    assert [m.rcpt_tos for m in sink.messages()] == [(fine["email"],)]
    await asyncio.sleep(2)  # a receipt, a sweep, a retry: nothing more goes out
    assert numbers(await stub_messages(api, gateway)) == [falls["phone"].removeprefix("+86")]
    assert len(await ledger(api, key, policy["id"])) == 4 and sink.count() == 1
    _, got = await api.call("GET", f"/v1/policies/{policy['id']}", key)
    assert got["deliveries"]["sms"]["sent"] + got["deliveries"]["sms"]["delivered"] == 1, got


async def test_fallbacks_both_ways_make_no_loop(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub
) -> None:
    # Both channels fail for good: each would fall back to the other, where the person has a row already.
    key = (await api.department())["api_key"]
    person = await subscribe(api, key, 1, BOTH)
    sink.set_faults(reject=[person["email"]])
    await stub_post(api, gateway, "/_stub/faults", {"invalid_numbers": [person["phone"]]})
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, policy = await api.call("POST", "/v1/policies", key,
                                    json={**FALLBACK, "channels": BOTH, "fallback": {"email": "sms", "sms": "email"}})
    assert status == 202, policy

    async def both_failed() -> list[dict[str, Any]]:
        rows = await ledger(api, key, policy["id"])
        return rows if sorted(r["status"] for r in rows) == ["failed", "failed"] else []

    rows = await eventually(both_failed)
    assert all(r["fallback_of"] is None for r in rows)
    await asyncio.sleep(2)
    assert len(await ledger(api, key, policy["id"])) == 2 and sink.count() == 0
    assert len(numbers(await stub_messages(api, gateway))) <= 1  # the one refused request, never again

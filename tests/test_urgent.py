"""The urgent lane (issue 17, item 4): a right the admin grants and the audit log records; an urgent
policy reaches digest subscribers and those in their quiet hours at once, through worker processes
serving its own queue; a running big fan-out does not delay it (the quick bench)."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest

from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import REPO_ROOT
from tests import test_sms
from tests.conftest import ADMIN, PG_URL, Api, Workers, eventually
from tests.test_api_foundation import POLICY, enterprise
from tests.test_lifecycle import stub_messages
from tests.test_sms import SIGN, SMS_SECRET

gateway = test_sms.gateway  # the SMS stand-in (a fixture)
URGENT = {**POLICY, "title": "关于台风红色预警期间停工停课的紧急通知", "priority": "urgent"}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # The service's quiet hours cover the whole day but its last minute: a normal SMS is held.
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_SMS_SIGN_NAME": SIGN,
            "PUSHSVC_QUIET_HOURS": "00:00-23:59"}


async def grant(api: Api, department_id: int, allowed: bool = True) -> dict[str, Any]:
    status, body = await api.call("PUT", f"/v1/departments/{department_id}/urgent", ADMIN,
                                  json={"may_send_urgent": allowed})
    assert status == 200, body
    return body


def quiet_now() -> dict[str, str]:
    """Quiet hours around the present local time, so the test does not depend on when it runs."""
    at = datetime.now(LOCAL_ZONE)
    return {"start": (at - timedelta(hours=1)).strftime("%H:%M"), "end": (at + timedelta(hours=1)).strftime("%H:%M")}


def mails_titled(sink: SmtpSink, title: str) -> list[tuple[str, ...]]:
    """The recipients of each message the sink got whose subject carries `title`."""
    return [m.rcpt_tos for m in sink.messages()
            if title in str(email.message_from_bytes(m.data, policy=email.policy.default)["Subject"])]


async def test_urgent_is_a_right_the_admin_grants_and_the_log_records(api: Api) -> None:
    dept = await api.department()
    other = await api.department("市应急管理局")
    key = dept["api_key"]
    status, body = await api.call("POST", "/v1/policies", key, json=URGENT)
    assert status == 403 and body["errors"][0]["field"] == "priority", body
    status, body = await api.call("POST", "/v1/policies", key, json={**URGENT, "priority": "high"})
    assert status == 422 and body["errors"][0]["field"] == "priority", body

    path = f"/v1/departments/{dept['id']}/urgent"
    # Neither the department itself, another department nor an anonymous caller may grant it.
    for token, expected in ((key, 403), (other["api_key"], 403), (None, 401)):
        status, body = await api.call("PUT", path, token, json={"may_send_urgent": True})
        assert status == expected, body
    assert (await api.call("GET", path, other["api_key"]))[0] == 403
    assert (await api.call("GET", path, None))[0] == 401
    assert (await api.call("PUT", "/v1/departments/999999/urgent", ADMIN, json={"may_send_urgent": True}))[0] == 404
    status, body = await api.call("PUT", path, ADMIN, json={"may_send_urgent": "yes please"})
    assert status == 422 and body["errors"][0]["field"] == "may_send_urgent", body
    assert (await api.call("GET", path, key))[1] == {"department_id": dept["id"], "may_send_urgent": False}

    assert await grant(api, dept["id"]) == {"department_id": dept["id"], "may_send_urgent": True}
    status, body = await api.call("POST", "/v1/policies", key, json=URGENT)
    assert status == 202 and body["priority"] == "urgent", body
    status, got = await api.call("GET", f"/v1/policies/{body['id']}", key)
    assert got["priority"] == "urgent" and got["fallback"] is None
    # The other department has no such right.
    assert (await api.call("POST", "/v1/policies", other["api_key"], json=URGENT))[0] == 403

    await grant(api, dept["id"], allowed=False)
    assert (await api.call("POST", "/v1/policies", key, json=URGENT))[0] == 403
    status, log = await api.call("GET", "/v1/audit", ADMIN)
    granted = [e for e in log["items"] if e["action"] == "department.urgent"]
    assert [e["actor"] for e in granted] == ["admin", "admin"], granted


async def test_urgent_reaches_digest_and_quiet_hours_subscribers_at_once(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await grant(api, dept["id"])
    both = ["email", "sms"]
    people = [
        enterprise(1, channels=both, frequency="daily"),
        enterprise(2, channels=both, frequency="weekly"),
        enterprise(3, channels=["sms"], quiet_hours=quiet_now()),  # their own quiet hours
        enterprise(4, channels=["sms"]),  # the service's (the fixture's)
    ]
    phones = []
    for person in people:
        status, body = await api.call("POST", "/v1/subscribers", key, json=person)
        assert status == 201, body
        phones.append(body["phone"])
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, normal = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": both})
    assert status == 202, normal

    async def normal_waits() -> bool:
        _, got = await api.call("GET", f"/v1/policies/{normal['id']}", key)
        counts = got["deliveries"]
        return got["status"] == "published" and counts["email"]["held"] == 2 and counts["sms"]["held"] == 4

    await eventually(normal_waits)
    assert sink.count() == 0 and await stub_messages(api, gateway) == []  # digests and quiet hours hold it

    status, urgent = await api.call("POST", "/v1/policies", key, json={**URGENT, "channels": both})
    assert status == 202, urgent

    async def urgent_sent() -> list[str]:
        numbers = [n for m in await stub_messages(api, gateway) for n in m["numbers"]]
        return numbers if len(numbers) == 4 and sink.count() == 2 else []

    assert sorted(await eventually(urgent_sent, timeout=20)) == sorted(p.removeprefix("+86") for p in phones)
    assert sorted(to for rcpt in mails_titled(sink, URGENT["title"]) for to in rcpt) == sorted(
        p["email"] for p in people[:2])
    _, got = await api.call("GET", f"/v1/policies/{urgent['id']}", key)
    assert {ch: c["held"] + c["queued"] for ch, c in got["deliveries"].items()} == {"email": 0, "sms": 0}, got
    # Only the urgent one went out: the normal one keeps waiting.
    _, waiting = await api.call("GET", f"/v1/policies/{normal['id']}", key)
    assert waiting["deliveries"]["sms"]["held"] == 4 and sink.count() == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_running_fanout_does_not_delay_an_urgent_one(backend: str, redis_url: str) -> None:
    if backend == "postgresql" and not PG_URL:
        pytest.skip("PUSHSVC_TEST_DATABASE_URL not set")
    # In a process of its own: on PostgreSQL the bench points every connection of its process at the
    # bench schema, which this test process's later tests must not inherit.
    done = subprocess.run([sys.executable, "-m", "bench.urgent", "--quick", "--database", backend,
                           "--pg-url", PG_URL or "", "--redis-url", redis_url],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "urgent p95" in out and "the big fan-out: every row sent" in out, out

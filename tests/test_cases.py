"""Case progress (issue 6): the API and its state machine, the case page, time limits and alerts,
and ordered, exactly-once messages from two real workers through the stand-in SMS gateway."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.cases.alerts import alert_due, run_case_alerts
from pushsvc.channels import build_channels
from pushsvc.core.case_states import LABELS, allowed_next
from pushsvc.core.identifiers import mask_name
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.workdays import add_working_days, working_days_between
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.i18n import words
from pushsvc.services import open_services
from pushsvc.settings import Settings
from pushsvc.store.schema import case_notifications, cases
from tests.conftest import ADMIN, Api, Workers, eventually

SMS_SECRET = "test-sms-secret-0123456789"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
# Every case of the concurrency test goes through these, in this order.
JOURNEY = [("accepted", None), ("in_review", None), ("supplement_required", "身份证复印件、营业执照副本"),
           ("in_review", None), ("approved", None), ("completed", None), ("result_delivered", None)]


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_WORKER_MAX_JOBS": "20"}


@pytest.fixture
async def gateway(api: Api) -> AsyncIterator[SmsGatewayStub]:
    # Receipts late enough never to come during the other tests (test_sms_receipts_reach_case_notifications reads them).
    stub = SmsGatewayStub(SMS_SECRET, "PUSHSVC_POLICY", f"{api.base}/v1/receipts/sms", receipt_delay=300)
    await stub.start()
    yield stub
    await stub.stop()


def phone(i: int) -> str:
    return f"+86139{i:08d}"


def case_body(no: str, i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"case_no": no, "service_item": "个体工商户设立登记",
            "applicant": {"name": "张小三", "phone": phone(i)}, **extra}


def event(eid: str, status: str, minutes: int = 0, note: str | None = None) -> dict[str, Any]:
    return {"event_id": eid, "status": status, "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "note": note}


async def test_cases_api_state_machine_and_page(api: Api, settings_env: dict[str, str]) -> None:
    key = (await api.department())["api_key"]
    other = (await api.department("市市场监管局"))["api_key"]
    status, case = await api.call("POST", "/v1/cases", key, json=case_body("GZ-2026-001", time_limit_days=5))
    assert status == 201, case
    assert case["status"] == "submitted" and case["channels"] == ["sms"] and case["events"] == []
    status, body = await api.call("POST", "/v1/cases", key, json=case_body("GZ-2026-001"))
    assert status == 409 and body["errors"][0]["field"] == "case_no"
    status, _ = await api.call("POST", "/v1/cases", other, json=case_body("GZ-2026-001"))
    assert status == 201  # unique per department only
    status, body = await api.call("POST", "/v1/cases", key, json={**case_body("X"), "channels": ["email"]})
    assert status == 422 and body["errors"][0]["field"] == "channels[0]"
    status, body = await api.call("POST", "/v1/cases", key,
                                  json={**case_body("Y"), "applicant": {"name": "李四", "phone": "12345"}})
    assert status == 422 and body["errors"][0]["field"] == "applicant.phone"

    path = "/v1/cases/GZ-2026-001"
    status, body = await api.call("POST", f"{path}/events", key, json=event("e1", "accepted", 0))
    assert status == 202 and body["case_status"] == "accepted" and body["event"]["applied"], body
    # A repeated event_id: 200, nothing new.
    status, body = await api.call("POST", f"{path}/events", key, json=event("e1", "accepted", 0))
    assert status == 200 and body["duplicate"] and body["event"]["seq"] == 1
    # An invalid move: 409 naming what may come next.
    status, body = await api.call("POST", f"{path}/events", key, json=event("e2", "completed", 10))
    assert status == 409 and body["allowed_next"] == ["in_review", "withdrawn"] == allowed_next("accepted")
    assert "in_review" in body["errors"][0]["message"]
    status, body = await api.call("POST", f"{path}/events", key, json=event("e2", "bogus", 10))
    assert status == 422 and body["errors"][0]["field"] == "status"
    status, body = await api.call("POST", f"{path}/events", key, json=event("e3", "in_review", 20))
    assert status == 202
    status, body = await api.call("POST", f"{path}/events", key, json=event("e4", "supplement_required", 30))
    assert status == 422 and body["errors"][0]["field"] == "note"
    # An event older than the latest: recorded, moves nothing, sends nothing (even an "invalid" one).
    status, body = await api.call("POST", f"{path}/events", key, json=event("e0", "submitted", -5, "窗口收件"))
    assert status == 202 and not body["event"]["applied"] and body["case_status"] == "in_review", body
    status, body = await api.call("POST", f"{path}/events", key,
                                  json=event("e5", "supplement_required", 40, "身份证复印件"))
    assert status == 202
    far = {**event("e6", "in_review"), "occurred_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}
    status, body = await api.call("POST", f"{path}/events", key, json=far)
    assert status == 422 and body["errors"][0]["field"] == "occurred_at"

    # Another department's case is unknown to this one (each sees its own GZ-2026-001).
    await api.call("POST", "/v1/cases", key, json=case_body("ONLY-MINE"))
    status, _ = await api.call("GET", "/v1/cases/ONLY-MINE", other)
    assert status == 404
    status, theirs = await api.call("GET", "/v1/cases/GZ-2026-001", other)
    assert status == 200 and theirs["status"] == "submitted"
    status, _ = await api.call("POST", "/v1/cases/ONLY-MINE/events", other, json=event("z", "accepted"))
    assert status == 404

    status, case = await api.call("GET", path, key)
    assert status == 200 and case["status"] == "supplement_required"
    assert [e["event_id"] for e in case["events"]] == ["e0", "e1", "e3", "e5"]  # in the order they happened
    assert case["events"][0]["notifications"] == {} and case["events"][1]["notifications"] == {"sms": "queued"}
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(case_notifications.c.event_seq))).scalars().all()
    finally:
        await engine.dispose()
    assert sorted(rows) == [1, 2, 4]  # one per applied event: not the duplicate, not the old one

    # The page: no login, the name masked, the timeline, the status in words; a phone-sized layout.
    token = case["page_url"].rsplit("/c/", 1)[1]
    status, html = await api.call("GET", f"/c/{token}")
    assert status == 200 and "张*三" in html and "张小三" not in html and "个体工商户设立登记" in html
    assert words("zh-CN").gettext(LABELS["supplement_required"]) in html and "身份证复印件" in html and 'name="viewport"' in html
    assert case["due_on"] in html
    for bad in (token[:-2] + "xx", "garbage", token.replace(".", "")):
        status, html = await api.call("GET", f"/c/{bad}")
        assert status == 400 and "链接" in html
    async with api.session.get(f"{api.base}/c/{token}/qr.png") as resp:
        assert resp.status == 200 and resp.content_type == "image/png" and (await resp.read())[:4] == b"\x89PNG"
    code = case["short_url"].rsplit("/s/", 1)[1]
    async with api.session.get(f"{api.base}/s/{code}", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"].endswith(f"/c/{token}")


async def test_events_arriving_together_each_get_their_own_answer(api: Api) -> None:
    """Requests in flight together are written as one group; each event is still judged alone:
    a repeat inside the group is a repeat, a bad move or an unknown case fails alone."""
    key = (await api.department())["api_key"]
    n = 20
    for i in range(n):
        status, body = await api.call("POST", "/v1/cases", key, json=case_body(f"G{i}"))
        assert status == 201, body
    calls = [api.call("POST", f"/v1/cases/G{i}/events", key, json=event(f"g{i}", "accepted")) for i in range(n)]
    calls += [api.call("POST", "/v1/cases/G0/events", key, json=event("g0", "accepted")),
              api.call("POST", "/v1/cases/G1/events", key, json=event("bad", "completed")),
              api.call("POST", "/v1/cases/NOPE/events", key, json=event("n1", "accepted"))]
    results = await asyncio.gather(*calls)
    firsts, (again, bad, nope) = results[:n], results[n:]
    assert sorted([firsts[0][0], again[0]]) == [200, 202]
    assert firsts[0][1]["event"]["seq"] == again[1]["event"]["seq"] == 1
    assert all(code == 202 and body["event"]["seq"] == 1 for code, body in firsts[1:]), firsts
    assert bad[0] == 409 and nope[0] == 404
    for i in range(2, n):
        status, case = await api.call("GET", f"/v1/cases/G{i}", key)
        assert case["status"] == "accepted" and len(case["events"]) == 1


def test_mask_name() -> None:
    assert [mask_name(n) for n in ("张小三", "张三", "欧阳娜娜", "张", "John Smith")] == \
        ["张*三", "张*", "欧**娜", "张*", "J********h"]


async def test_overdue_list_and_alert_once(api: Api, settings: Settings, settings_env: dict[str, str],
                                           sink: SmtpSink) -> None:
    status, dept = await api.call("POST", "/v1/departments", ADMIN, json={
        "name": "市住建局", "domains": ["affordable-housing"], "contact_email": "duty@zjj.example.gov.cn"})
    key = dept["api_key"]
    for no in ("LATE", "ONTIME", "DONE", "NOLIMIT"):
        status, body = await api.call("POST", "/v1/cases", key, json=case_body(no, time_limit_days=10)
                                      if no != "NOLIMIT" else case_body(no))
        assert status == 201, body
    await api.call("POST", "/v1/cases/DONE/events", key, json=event("d1", "not_accepted", 0))
    # LATE and DONE were started 15 working days ago: past their 10 days.
    today = local_date(datetime.now(timezone.utc))
    started = add_working_days(today, -15)
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(cases).where(cases.c.case_no.in_(["LATE", "DONE"])).values(
                started_on=started, due_on=add_working_days(started, 10)))
    finally:
        await engine.dispose()
    status, page = await api.call("GET", "/v1/cases?overdue=true", key)
    assert status == 200 and [c["case_no"] for c in page["items"]] == ["LATE"] and page["items"][0]["overdue"]
    status, page = await api.call("GET", "/v1/cases?limit=2", key)
    assert len(page["items"]) == 2 and page["next_cursor"]
    status, page2 = await api.call("GET", f"/v1/cases?limit=2&cursor={page['next_cursor']}", key)
    assert [c["case_no"] for c in page["items"] + page2["items"]] == ["LATE", "ONTIME", "DONE", "NOLIMIT"]
    status, _ = await api.call("GET", "/v1/cases?overdue=maybe", key)
    assert status == 422

    # 80% of 10 working days is 8: alert on the 8th working day, not the 7th.
    assert not alert_due(date(2026, 2, 13), 10, add_working_days(date(2026, 2, 13), 7))
    assert alert_due(date(2026, 2, 13), 10, add_working_days(date(2026, 2, 13), 8))
    svc = await open_services(settings)
    svc.channels = build_channels(settings, svc.renderer, svc.signer)
    for channel in svc.channels.values():
        await channel.start()
    try:
        # Two runs at once (two workers' crons) and one later: one e-mail, for LATE only.
        first = await asyncio.gather(run_case_alerts(svc), run_case_alerts(svc))
        assert sorted(first) == [0, 1]
        assert await run_case_alerts(svc) == 0
    finally:
        await svc.close()
    await eventually(lambda: sink.count() >= 1)
    await asyncio.sleep(0.3)
    assert sink.count() == 1
    mail = email.message_from_bytes(sink.messages()[0].data, policy=email.policy.default)
    assert sink.messages()[0].rcpt_tos == ("duty@zjj.example.gov.cn",)
    assert "List-Unsubscribe" not in mail and "List-Unsubscribe-Post" not in mail  # not a subscription
    assert "LATE" in str(mail["Subject"]) and f"{working_days_between(started, today)}/10" in str(mail["Subject"])


async def _stub_messages(api: Api, gw: SmsGatewayStub) -> list[dict[str, Any]]:
    async with api.session.get(gw.url + "/_stub/messages") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def test_two_workers_200_cases_in_order_once(api: Api, workers: Workers, gateway: SmsGatewayStub) -> None:
    n = 200
    key = (await api.department())["api_key"]
    for i in range(n):
        status, body = await api.call("POST", "/v1/cases", key, json=case_body(f"C{i:03d}", i))
        assert status == 201, body
    # Temporary gateway failures: retries must back off without letting later events overtake.
    async with api.session.post(gateway.url + "/_stub/faults", json={"rate_limit": 0.1, "server_error": 0.1}) as r:
        assert r.status == 200
    for _ in range(2):
        # 20% errors per attempt: 6 attempts would give up on one of 1,400 messages about one run in ten.
        workers.start(PUSHSVC_SMS_URL=gateway.url, PUSHSVC_MAX_ATTEMPTS="20")

    async def applicant(i: int) -> None:
        # Each business system posts a case's steps in order; the cases' steps interleave at random.
        for k, (status, note) in enumerate(JOURNEY):
            await asyncio.sleep(random.random() * 0.05)
            code, body = await api.call("POST", f"/v1/cases/C{i:03d}/events", key, json=event(f"{i}-{k}", status, k, note))
            assert code == 202, body

    await asyncio.gather(*(applicant(i) for i in range(n)))
    total = n * len(JOURNEY)

    async def all_arrived() -> bool:
        return sum(len(m["numbers"]) for m in await _stub_messages(api, gateway)) >= total

    await eventually(all_arrived, timeout=90, interval=0.5)
    await asyncio.sleep(1.0)  # anything sent twice would show up now
    received: dict[str, list[str]] = {}
    labels = {words("zh-CN").gettext(LABELS[s]): s for s, _ in JOURNEY}
    for m in await _stub_messages(api, gateway):
        assert len(m["numbers"]) == 1
        label = next(w for w in sorted(labels, key=len, reverse=True) if w in m["text"])
        received.setdefault(m["numbers"][0], []).append(labels[label])
    expected = [s for s, _ in JOURNEY]
    wrong = {number: got for number, got in received.items() if got != expected}
    assert len(received) == n and not wrong, [(k, v) for k, v in wrong.items()][:3]
    sample = next(m["text"] for m in await _stub_messages(api, gateway) if "补正" in m["text"])
    assert "身份证复印件" in sample and "/s/" in sample


async def test_sms_receipts_reach_case_notifications(api: Api, workers: Workers, database_url: str) -> None:
    """The gateway's receipts (signed, posted back to the API) move a case's messages to delivered
    or failed, like a policy's; the timeline shows it."""
    stub = SmsGatewayStub(SMS_SECRET, "PUSHSVC_POLICY", f"{api.base}/v1/receipts/sms", receipt_delay=0.3)
    await stub.start()
    try:
        key = (await api.department())["api_key"]
        for i in (0, 1):
            status, body = await api.call("POST", "/v1/cases", key, json=case_body(f"R{i}", i))
            assert status == 201, body
        async with api.session.post(stub.url + "/_stub/faults", json={"undelivered_numbers": [phone(1)[3:]]}) as r:
            assert r.status == 200, await r.text()
        workers.start(PUSHSVC_SMS_URL=stub.url)
        for i in (0, 1):
            code, body = await api.call("POST", f"/v1/cases/R{i}/events", key, json=event(f"r{i}", "accepted"))
            assert code == 202, body

        async def statuses() -> dict[str, str] | None:
            found = {}
            for i in (0, 1):
                _, case = await api.call("GET", f"/v1/cases/R{i}", key)
                found[f"R{i}"] = case["events"][0]["notifications"]["sms"]
            return found if "sent" not in found.values() and "queued" not in found.values() else None

        assert await eventually(statuses, timeout=30) == {"R0": "delivered", "R1": "failed"}
    finally:
        await stub.stop()
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(case_notifications.c.status, case_notifications.c.delivered_at,
                                             case_notifications.c.error).order_by(case_notifications.c.id))).all()
    await engine.dispose()
    assert rows[0].status == "delivered" and rows[0].delivered_at is not None
    assert rows[1].status == "failed" and "not delivered" in rows[1].error

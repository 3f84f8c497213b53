"""The figures for assessment and the dead-letter view, end to end: real workers send through the
SMTP sink and the SMS stand-in with failures injected, then the report (JSON and CSV) is checked
against what the stand-ins recorded and what the ledger holds, on every test database."""

from __future__ import annotations

import asyncio
import csv
import io
import statistics
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.identifiers import uscc_check_char
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.workdays import add_working_days, working_days_between
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_sms import accepted, gateway, phone, settings_env, stub_get, stub_post  # noqa: F401  (the SMS tests' fixtures: the stub, no quiet hours)

HEADER = "name,email,phone,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"


def email(i: int) -> str:
    return f"user{i}@example.com"


async def seed(api: Api, key: str, rows: list[tuple[int, bool, str]]) -> None:
    """(n, with a phone, district): every subscriber has an e-mail address; those with a phone take SMS too."""
    lines = [HEADER]
    for i, with_phone, district in rows:
        body = f"91440101MA{i:07d}"
        channels = "email;sms" if with_phone else "email"
        lines.append(f"企业{i},{email(i)},{phone(i) if with_phone else ''},*,{channels},{body}{uscc_check_char(body)},{district},C,small")
    status, body = await api.call("POST", "/v1/subscribers/import", key, data="\n".join(lines).encode(),
                                  headers={"Content-Type": "text/csv"})
    assert status == 200 and body["imported"] == len(rows), body


def local_today() -> Any:
    return datetime.now(LOCAL_ZONE).date()


async def report(api: Api, token: str, query: str = "") -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/reports/department{query}", token)
    assert status == 200, body
    return body


def settled(body: dict[str, Any], policies: int) -> bool:
    """Every message final, SMS receipts in, every fan-out done."""
    ps = body["policies"]
    return len(ps) == policies and all(
        p["status"] == "published" and p["messages"]["pending"] == 0
        and p["by_channel"]["sms"]["delivered"] + p["by_channel"]["sms"]["failed"] == p["by_channel"]["sms"]["matched"]
        for p in ps
    )


async def ledger_times(database_url: str) -> dict[int, list[float]]:
    """Seconds from each policy going public to each message reached, computed from the rows."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            policies = {r.id: r for r in await conn.execute(sa.text("SELECT id, created_at, publish_at FROM policies"))}
            rows = (await conn.execute(sa.text(
                "SELECT policy_id, status, sent_at, delivered_at FROM deliveries WHERE notice = 0 AND status IN ('sent', 'delivered')"
            ))).all()
    finally:
        await engine.dispose()

    def utc(value: Any) -> datetime:
        value = datetime.fromisoformat(value) if isinstance(value, str) else value
        return value.replace(tzinfo=timezone.utc)

    times: dict[int, list[float]] = {}
    for r in rows:
        p = policies[r.policy_id]
        start = max(utc(p.created_at), utc(p.publish_at)) if p.publish_at else utc(p.created_at)
        reached = utc(r.delivered_at if r.status == "delivered" else r.sent_at)
        times.setdefault(r.policy_id, []).append((reached - start).total_seconds())
    return times


def quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), statistics.quantiles(ordered, n=20, method="inclusive")[-1]


async def test_report_matches_what_the_stand_ins_recorded(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub, database_url: str
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, [(i, True, "haizhu") for i in range(10)] + [(10, False, "haizhu"), (11, False, "tianhe")]
               + [(20, True, "yuexiu"), (21, False, "yuexiu")])  # the last two are not targeted
    # Subscriber 0 is reached on neither channel; 3 only by SMS; 1 by e-mail while its SMS is not delivered.
    await stub_post(api, gateway, "/_stub/faults", {"invalid_numbers": [phone(0)], "undelivered_numbers": [phone(1)]})
    sink.set_faults(reject={email(0), email(3)})
    workers.start(PUSHSVC_SMS_URL=gateway.url)

    today = local_today()
    late_from = add_working_days(today, -25)
    status, late = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": ["email", "sms"],
                                                                     "produced_on": late_from.isoformat()})
    assert status == 202, late
    status, prompt = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": "=SUM(A1) 第二项政策",
                                                                       "produced_on": today.isoformat()})
    assert status == 202, prompt
    body = await eventually(lambda: _report_if(api, key, 2), timeout=60)

    # What the stand-ins recorded.
    mailed = [r for m in sink.messages() for r in m.rcpt_tos]
    sms_results = [r for m in await stub_get(api, gateway, "/_stub/messages") for r in m["results"]]
    sms_ok = accepted(await stub_get(api, gateway, "/_stub/messages"))
    assert len(mailed) == 20 and sink.stats()["rcpt_rejected"] == 4  # two policies, two refused each
    assert sorted(sms_ok) == sorted(phone(i)[3:] for i in range(1, 10))

    first, second = body["policies"]
    assert (first["id"], second["id"]) == (late["id"], prompt["id"])
    e, s = first["by_channel"]["email"], first["by_channel"]["sms"]
    assert (first["matched"], first["reached"], first["reach_rate"]) == (12, 11, round(11 / 12, 4))
    assert e == {"matched": 12, "sent": len(mailed) // 2, "delivered": 0, "failed": 2, "pending": 0,
                 "failed_by_reason": {"550 5.1.1": 2}}
    undelivered = 1
    assert s == {"matched": 10, "sent": len(sms_ok), "delivered": len(sms_ok) - undelivered, "failed": 2, "pending": 0,
                 "failed_by_reason": {"isv.MOBILE_NUMBER_ILLEGAL": 1, "not delivered: UNDELIV": 1}}
    assert sum(r["code"] == "isv.MOBILE_NUMBER_ILLEGAL" for r in sms_results) == 1
    assert first["by_channel"]["wechat"]["matched"] == 0
    assert first["messages"]["matched"] == 22 and first["messages"]["failed"] == 4
    assert (second["matched"], second["reached"], second["messages"]["sent"]) == (12, 10, 10)

    # Timeliness: 25 working days (the holiday calendar's) is late by 5; the same day is on time.
    expected_days = working_days_between(late_from, today)
    assert first["timeliness"] == {"produced_on": late_from.isoformat(), "published_on": today.isoformat(),
                                   "working_days": expected_days, "limit": 20, "on_time": False,
                                   "late_by": expected_days - 20}
    assert second["timeliness"]["on_time"] is True and second["timeliness"]["late_by"] == 0

    # Times: the median and 95th percentile of what the ledger's own timestamps say.
    times = await ledger_times(database_url)
    for p in (first, second):
        median, p95 = quantiles(times[p["id"]])
        t = p["time_to_delivery"]
        assert t["count"] == len(times[p["id"]])
        assert t["median_seconds"] == pytest.approx(median, abs=0.01) and t["p95_seconds"] == pytest.approx(p95, abs=0.01)
        assert 0 <= t["median_seconds"] <= t["p95_seconds"] < 60
    # Timed: what was sent or delivered, not the SMS whose receipt said it was not delivered.
    assert (first["time_to_delivery"]["count"], second["time_to_delivery"]["count"]) == (10 + 8, 10)
    median, p95 = quantiles(times[first["id"]] + times[second["id"]])
    total = body["total"]
    assert total["time_to_delivery"]["median_seconds"] == pytest.approx(median, abs=0.01)
    assert total["time_to_delivery"]["p95_seconds"] == pytest.approx(p95, abs=0.01)
    assert (total["policies"], total["matched"], total["reached"]) == (2, 24, 21)
    assert total["by_channel"]["email"]["failed_by_reason"] == {"550 5.1.1": 4}
    assert total["timeliness"] == {"on_time": 1, "late": 1, "unknown": 0}
    sent_by_day = {ch: sum(d["by_channel"][ch] for d in body["sent_per_day"]) for ch in ("email", "sms")}
    assert sent_by_day == {"email": len(mailed), "sms": len(sms_ok)}

    # The spreadsheet: the same figures, a row per policy and a total row, readable by Excel.
    async with api.session.get(f"{api.base}/v1/reports/department?format=csv", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv" and resp.charset == "utf-8"
        assert "attachment" in resp.headers["Content-Disposition"]
        raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 3
    table = [dict(zip(header, row)) for row in rows]
    assert table[0]["政策ID policy_id"] == str(first["id"]) and table[2]["政策ID policy_id"] == "合计 total"
    assert table[1]["标题 title"] == "'" + second["title"]  # never a formula in Excel
    for row, figures in zip(table, [first, second, total]):
        assert row["匹配对象 matched"] == str(figures["matched"]) and row["触达对象 reached"] == str(figures["reached"])
        assert row["已发送 sent"] == str(figures["messages"]["sent"]) and row["失败 failed"] == str(figures["messages"]["failed"])
        assert row["短信 sms_delivered"] == str(figures["by_channel"]["sms"]["delivered"])
        assert row["邮件 email_failed"] == str(figures["by_channel"]["email"]["failed"])
        assert float(row["用时95%(秒) p95_seconds"]) == figures["time_to_delivery"]["p95_seconds"]
    assert table[0]["超期工作日 late_by"] == str(expected_days - 20) and table[0]["按时 on_time"] == "否"
    assert table[2]["按时 on_time"] == "1/2"
    assert "550 5.1.1 (2)" in table[0]["失败原因 failure_reasons"]

    # Nothing here is temporary: retrying sends nothing again, least of all to the invalid number.
    status, retried = await api.call("POST", f"/v1/policies/{late['id']}/retry-failed", key)
    assert status == 202 and retried == {"requeued": 0, "by_channel": {}, "still_failed": 4}
    await asyncio.sleep(1.5)
    numbers = [n for m in await stub_get(api, gateway, "/_stub/messages") for n in m["numbers"]]
    assert numbers.count(phone(0)[3:]) == 1 and len(sink.messages()) == 20


async def _report_if(api: Api, key: str, policies: int) -> dict[str, Any] | None:
    body = await report(api, key)
    return body if settled(body, policies) else None


async def test_dead_letters_and_retrying_only_the_temporary_failures(
    api: Api, workers: Workers, sink: SmtpSink, database_url: str
) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key = dept["api_key"]
    await seed(api, key, [(i, False, "haizhu") for i in range(6)])
    sink.set_faults(temp_fail_for=600, reject={email(2)})
    workers.start(PUSHSVC_MAX_ATTEMPTS="2")
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy
    body = await eventually(lambda: _failed_if(api, key, 6), timeout=60)
    assert body["policies"][0]["by_channel"]["email"]["failed_by_reason"] == {"gave up: 451 4.3.0": 5, "550 5.1.1": 1}

    # The dead letters, a page at a time, across the department's policies.
    status, page = await api.call("GET", "/v1/deliveries?status=failed&limit=4", key)
    assert status == 200 and len(page["items"]) == 4 and page["next_cursor"]
    status, rest = await api.call("GET", f"/v1/deliveries?limit=4&cursor={page['next_cursor']}", key)
    assert status == 200 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    items = page["items"] + rest["items"]
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)
    assert {i["policy_id"] for i in items} == {policy["id"]} and all(i["notice"] == 0 for i in items)
    permanent = [i for i in items if not i["retryable"]]
    assert len(permanent) == 1 and permanent[0]["reason"] == "550 5.1.1" and permanent[0]["attempts"] == 1
    assert all(i["reason"] == "gave up: 451 4.3.0" and i["attempts"] == 2 for i in items if i["retryable"])

    # Another department sees none of them and cannot touch the policy; the admin sees them all.
    status, theirs = await api.call("GET", "/v1/deliveries", other["api_key"])
    assert status == 200 and theirs["items"] == []
    status, _ = await api.call("GET", f"/v1/deliveries?department_id={dept['id']}", other["api_key"])
    assert status == 403
    status, _ = await api.call("POST", f"/v1/policies/{policy['id']}/retry-failed", other["api_key"])
    assert status == 404
    status, _ = await api.call("POST", f"/v1/policies/{policy['id']}/retry-failed")
    assert status == 401
    status, every = await api.call("GET", f"/v1/deliveries?department_id={dept['id']}", ADMIN)
    assert status == 200 and len(every["items"]) == 6
    status, bad = await api.call("GET", "/v1/deliveries?status=lost", key)
    assert status == 422 and bad["errors"][0]["field"] == "status"

    # The server accepts mail again: retrying sends the five temporary failures, and only them, once.
    sink.set_faults(reject={email(2)})
    status, retried = await api.call("POST", f"/v1/policies/{policy['id']}/retry-failed", key)
    assert status == 202 and retried == {"requeued": 5, "by_channel": {"email": 5}, "still_failed": 1}
    status, again = await api.call("POST", f"/v1/policies/{policy['id']}/retry-failed", key)
    assert status == 202 and again["requeued"] == 0
    await eventually(lambda: len(sink.messages()) >= 5, timeout=30)
    final = await eventually(lambda: _failed_if(api, key, 1), timeout=30)
    assert final["policies"][0]["by_channel"]["email"]["sent"] == 5
    await asyncio.sleep(0.5)
    received = sorted(r for m in sink.messages() for r in m.rcpt_tos)
    assert received == sorted(email(i) for i in range(6) if i != 2)
    status, page = await api.call("GET", "/v1/deliveries", key)
    assert [i["reason"] for i in page["items"]] == ["550 5.1.1"]


async def _failed_if(api: Api, key: str, failed: int) -> dict[str, Any] | None:
    body = await report(api, key)
    p = body["policies"][0] if body["policies"] else None
    done = p is not None and p["status"] == "published" and p["messages"]["pending"] == 0
    return body if done and p["messages"]["failed"] == failed else None


async def test_credentials_periods_and_an_empty_report(api: Api) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key = dept["api_key"]
    path = "/v1/reports/department"
    assert (await api.call("GET", path))[0] == 401
    assert (await api.call("GET", path, "psk_wrong"))[0] == 401
    status, body = await api.call("GET", f"{path}?department_id={other['id']}", key)
    assert status == 403 and body["errors"][0]["field"] == "department_id"
    status, body = await api.call("GET", path, ADMIN)
    assert status == 422 and body["errors"][0]["field"] == "department_id"
    status, body = await api.call("GET", f"{path}?department_id=999999", ADMIN)
    assert status == 404 and body["status"] == 404
    for query, field in [("from=2026-02-30", "from"), ("to=tomorrow", "to"), ("from=2026-05-02&to=2026-05-01", "to"),
                         ("format=xlsx", "format"), ("department_id=x", "department_id")]:
        status, body = await api.call("GET", f"{path}?{query}", key)
        assert status == 422 and body["errors"][0]["field"] == field, (query, body)
        assert body["type"] and body["title"] and body["status"] == 422

    status, body = await api.call("GET", f"{path}?from=2026-01-01&to=2026-12-31&department_id={dept['id']}", key)
    assert status == 200 and body["from"] == "2026-01-01" and body["to"] == "2026-12-31"
    assert body["department"] == {"id": dept["id"], "name": dept["name"]} and body["policies"] == []
    assert body["total"]["matched"] == 0 and body["total"]["reach_rate"] is None and body["sent_per_day"] == []
    assert body["total"]["time_to_delivery"] == {"count": 0, "median_seconds": None, "p95_seconds": None}
    status, admin_view = await api.call("GET", f"{path}?department_id={other['id']}", ADMIN)
    assert status == 200 and admin_view["department"]["name"] == "市税务局"
    status, text = await api.call("GET", f"{path}?format=csv", key)
    assert status == 200 and text.lstrip("\ufeff").count("\n") == 2  # the header and the total row

"""E-mail bounces: a VERP return path per message, the bounce receiver (`pushsvc bounces`) reading
DSNs and auto-replies, the ledger and the suppression list it changes, and proving an address
again lifting its suppression."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.dsn import Bounce, ledger_of, parse, read_return_path, return_path
from pushsvc.core.identifiers import uscc_check_char
from pushsvc.delivery.bounce_server import start_bounce_server
from pushsvc.dev.stubs.smtp_sink import SmtpSink, _auto_reply, _dsn, send_report
from pushsvc.settings import Settings
from pushsvc.store.db import Database
from pushsvc.store.schema import deliveries, suppressions
from tests.conftest import SECRET, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_self_service import Visitor, link_in, mail_to

GONE, AWAY, SLOW, FINE = "Gone.User@example.com", "away@example.com", "slow@example.com", "fine@example.com"
ORIGINAL = b"From: push@example.gov.cn\r\nSubject: =?utf-8?b?5pS/562W?=\r\nTo: x@example.com\r\n\r\nbody\r\n"


# -- parsing and the return path, without servers ---------------------------------------------------


def test_dsns_and_auto_replies_are_told_apart() -> None:
    assert parse(_dsn("Gone@Example.com", ORIGINAL, "failed", "5.1.1")) == Bounce("hard", "5.1.1", "gone@example.com")
    assert parse(_dsn("x@example.com", ORIGINAL, "delayed", "4.4.7")).verdict == "soft"
    assert parse(_dsn("x@example.com", ORIGINAL, "failed", "4.2.2")).verdict == "soft"  # not a 5.x.x: not final
    assert parse(_auto_reply("x@example.com", ORIGINAL)).verdict == "auto_reply"
    for head in ("Auto-Submitted: auto-replied", "X-Autoreply: yes", "Precedence: bulk",
                 "Subject: Out of Office: back Monday", "Subject: =?utf-8?b?6Ieq5Yqo5Zue5aSNOiDmlL/nrZY=?="):
        assert parse(f"From: a@example.com\r\n{head}\r\n\r\nI am away.\r\n".encode()).verdict == "auto_reply", head
    # A person writing back, or a report of another type, is no bounce.
    assert parse(b"From: a@example.com\r\nSubject: Re: policy\r\n\r\nThanks!\r\n").verdict == "other"
    other_report = _dsn("x@example.com", ORIGINAL, "failed", "5.1.1").replace(b"report-type=delivery-status",
                                                                              b"report-type=disposition-notification")
    assert parse(other_report).verdict in ("auto_reply", "other")
    complaint = other_report.replace(b"report-type=disposition-notification", b"report-type=feedback-report")
    assert parse(complaint).verdict == "complaint"  # RFC 5965: marked as spam
    assert parse(b"\x00garbage").verdict == "other"


def test_return_paths_name_their_record_and_cannot_be_forged() -> None:
    address = return_path(SECRET, "example.gov.cn", "d", 123_456_789)
    local = address.partition("@")[0]
    assert local.startswith("bounces+") and len(local) <= 64 and local == local.lower()
    assert read_return_path(SECRET, "example.gov.cn", address) == ("d", 123_456_789)
    assert read_return_path(SECRET, "EXAMPLE.gov.cn", f"<{address.upper()}>") == ("d", 123_456_789)  # case folded
    assert read_return_path(SECRET, "other.example", address) is None
    assert read_return_path("another-secret-0123456789-0123456789", "example.gov.cn", address) is None
    forged = address.replace("bounces+d", "bounces+c")
    assert read_return_path(SECRET, "example.gov.cn", forged) is None
    assert read_return_path(SECRET, "example.gov.cn", "bounces@example.gov.cn") is None
    assert ledger_of("policy", 7, 3) == ("d", 7) and ledger_of("digest", 7, 3) == ("d", 7)
    assert ledger_of("case_update", 7, 0) == ("c", 7) and ledger_of("confirmation", 3, 3) == ("s", 3)
    assert ledger_of("case_alert", 0, 0) is None


# -- end to end ---------------------------------------------------------------------------------------


@pytest.fixture
async def receiver(settings: Settings, sink: SmtpSink) -> AsyncIterator[int]:
    """`pushsvc bounces` as the return paths' MX, on a loopback port the sink reports to."""
    db = Database(settings.database_url)
    server = await start_bounce_server(settings, db, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink.set_bounce_receiver("127.0.0.1", port)
    yield port
    server.close()
    await server.wait_closed()
    await db.close()


async def _subscribe(api: Api, key: str, address: str) -> int:
    uscc = f"91440101MA{len(address) * 1000 + ord(address[0]):07d}"
    enterprise = {"uscc": uscc + uscc_check_char(uscc), "district": "haizhu", "industry": "C", "scale": "small"}
    status, body = await api.call("POST", "/v1/subscribers", key, json={
        "name": "广州某某科技有限公司", "email": address, "audiences": {"enterprise": enterprise},
        "domains": ["*"], "channels": ["email"]})
    assert status == 201, body
    return int(body["id"])


async def _counts(api: Api, key: str, policy_id: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    return body["deliveries"]["email"] | {"_status": body["status"]}


async def _publish(api: Api, key: str, title: str, expected: dict[str, int]) -> dict[str, Any]:
    status, policy = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": title})
    assert status == 202, policy

    async def done() -> dict[str, Any] | None:
        c = await _counts(api, key, policy["id"])
        settled = c["_status"] == "published" and c["queued"] == c["sending"] == c["held"] == 0
        return c if settled and all(c[k] == n for k, n in expected.items()) else None

    await eventually(done, timeout=40)
    return policy


async def _rows(database_url: str, table: sa.Table) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(table).order_by(table.c.id))).mappings())
    finally:
        await engine.dispose()


async def test_a_bounce_fails_the_message_suppresses_the_address_until_proven_again(
    api: Api, workers: Workers, sink: SmtpSink, receiver: int, settings: Settings
) -> None:
    key = (await api.department())["api_key"]
    for address in (GONE, AWAY, SLOW, FINE):
        await _subscribe(api, key, address)
    sink.set_faults(bounce={GONE}, auto_reply={AWAY}, delay_report={SLOW})
    workers.start()

    first = await _publish(api, key, "第一项政策", {})
    # Each message left with a return path of its own, naming its ledger row.
    by_rcpt = {m.rcpt_tos[0]: m for m in sink.messages()}
    rows = {r["id"]: r for r in await _rows(settings.database_url, deliveries)}
    for m in by_rcpt.values():
        ledger, row_id = read_return_path(SECRET, "example.gov.cn", m.mail_from) or ("", 0)
        assert ledger == "d" and rows[row_id]["provider_ref"] == email.message_from_bytes(
            m.data, policy=email.policy.default)["Message-ID"]
    assert len({m.mail_from for m in by_rcpt.values()}) == 4

    # The sink accepted all four, then reported: a DSN (5.1.1) for GONE, a delay for SLOW, an
    # auto-reply from AWAY. Only the hard bounce changes anything.
    await eventually(lambda: sink.reports_sent >= 3, timeout=20)
    await eventually(lambda: _counts_are(api, key, first["id"], sent=3, failed=1))
    status, page = await api.call("GET", f"/v1/policies/{first['id']}/deliveries?status=failed", key)
    [failed] = page["items"]
    assert failed["error"] == "bounced: 5.1.1" and failed["attempts"] == 1
    [suppressed] = await _rows(settings.database_url, suppressions)
    assert (suppressed["kind"], suppressed["reason"], suppressed["detail"], suppressed["lifted_at"]) == (
        "email", "hard_bounce", "5.1.1", None)
    assert GONE.lower() not in str(suppressed).lower()  # a keyed digest, not the address

    # The same DSN again changes nothing; mail to anything but a return path of ours is refused.
    dsn = _dsn(GONE, by_rcpt[GONE].data, "failed", "5.1.1")
    await send_report("127.0.0.1", receiver, by_rcpt[GONE].mail_from, dsn)
    before = await _rows(settings.database_url, deliveries)
    assert len(await _rows(settings.database_url, suppressions)) == 1
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send_report("127.0.0.1", receiver, "postmaster@example.gov.cn", dsn)
    forged = by_rcpt[FINE].mail_from[:-len("@example.gov.cn") - 1] + "0@example.gov.cn"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send_report("127.0.0.1", receiver, forged, dsn)
    assert await _rows(settings.database_url, deliveries) == before

    # The next policy skips the address: `suppressed`, not failed, and nothing sent to it.
    sink.clear()
    second = await _publish(api, key, "第二项政策", {"sent": 3, "suppressed": 1})
    assert (await _counts(api, key, second["id"]))["failed"] == 0
    assert mail_to(sink, GONE) == []
    status, page = await api.call("GET", f"/v1/policies/{second['id']}/deliveries?status=suppressed", key)
    assert [i["error"] for i in page["items"]] == ["hard_bounce"]

    # The person (their mailbox fixed) asks for a way into their subscription and opens it.
    sink.set_faults()
    person = Visitor(api)
    await person.get("/manage")
    status, _ = await person.submit("/manage", {"contact": GONE, "action": "send"})
    assert status == 200
    [mail] = await eventually(lambda: mail_to(sink, GONE), timeout=20)
    status, html = await Visitor(api).get(link_in(mail, "/manage/"))
    assert status == 200
    [lifted] = await _rows(settings.database_url, suppressions)
    assert lifted["lifted_at"] is not None

    sink.clear()
    await _publish(api, key, "第三项政策", {"sent": 4, "suppressed": 0})
    assert len(mail_to(sink, GONE)) == 1

    # A spam complaint (a feedback report) about a message suppresses its address; the message stays sent.
    complaint = _dsn(FINE, by_rcpt[FINE].data, "failed", "5.1.1").replace(b"report-type=delivery-status",
                                                                          b"report-type=feedback-report")
    await send_report("127.0.0.1", receiver, by_rcpt[FINE].mail_from, complaint)
    assert [r["reason"] for r in await _rows(settings.database_url, suppressions) if r["lifted_at"] is None] == [
        "complaint"]
    assert await _counts_are(api, key, first["id"], sent=3, failed=1)


async def _counts_are(api: Api, key: str, policy_id: int, **expected: int) -> bool:
    c = await _counts(api, key, policy_id)
    return all(c[k] == n for k, n in expected.items())


async def test_a_refusal_at_send_time_suppresses_too(
    api: Api, workers: Workers, sink: SmtpSink, settings: Settings
) -> None:
    key = (await api.department())["api_key"]
    for address in (GONE, FINE):
        await _subscribe(api, key, address)
    sink.set_faults(reject={GONE})  # 550 5.1.1 at RCPT: the mailbox does not exist
    workers.start()
    await _publish(api, key, "第一项政策", {"sent": 1, "failed": 1})
    [row] = await _rows(settings.database_url, suppressions)
    assert (row["kind"], row["reason"], row["detail"]) == ("email", "hard_bounce", "5.1.1")
    sink.set_faults()
    await _publish(api, key, "第二项政策", {"sent": 1, "suppressed": 1, "failed": 0})

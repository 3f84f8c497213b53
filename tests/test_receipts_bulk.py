"""Receipts applied in bulk (issue 19, item 4): one push moves each named `sent` row once, by
provider id, never backwards; what it moves is told to the callbacks' outbox; on both backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bench import receipts as bench_receipts
from bench.receipts import message_id, phone, seed_ledger
from pushsvc.api.gateways import SmsReceipt
from pushsvc.channels.sms import national_number, pending_ref, provider_named
from pushsvc.core.clock import now
from pushsvc.delivery.receipts import record
from pushsvc.services import Services, open_services
from pushsvc.settings import REPO_ROOT, Settings
from pushsvc.store.schema import callback_events, case_notifications, cases, deliveries


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    services = await open_services(settings)
    async with services.db.write() as conn:
        await seed_ledger(conn, 6, now() - timedelta(minutes=5))
    yield services
    await services.close()


def receipt(i: int, delivered: bool, at: datetime | None = None, code: str | None = "UNDELIV",
            ref: str | None = None) -> SmsReceipt:
    return SmsReceipt(message_id=ref or message_id(i), delivered=delivered, reported_at=at,
                      error_code=None if delivered else code)


async def rows(svc: Services) -> dict[int, tuple[str, str | None, datetime | None]]:
    async with svc.db.read() as conn:
        found = await conn.execute(sa.select(deliveries.c.id, deliveries.c.status, deliveries.c.error,
                                             deliveries.c.delivered_at))
        return {row_id: (status, error, at) for row_id, status, error, at in found}


async def events(svc: Services) -> list[tuple[int, str]]:
    async with svc.db.read() as conn:
        payloads = (await conn.execute(sa.select(callback_events.c.payload).order_by(callback_events.c.id))).scalars()
        return [(p["subscriber_id"], p["status"]) for p in payloads]


async def test_one_push_moves_each_row_once_duplicates_and_unknown_ids_included(svc: Services) -> None:
    told_at = now() - timedelta(seconds=30)
    unknown = await record(svc, "sms", [
        receipt(1, True, told_at),
        receipt(2, False),
        receipt(3, True), receipt(3, True),  # the provider repeating itself in one push
        receipt(4, False), receipt(4, True),  # contradicting itself: delivered wins, as it always did
        receipt(0, True, ref="never-ours"),
        receipt(0, False, ref="not-yet"),
    ])
    assert unknown == ["never-ours", "not-yet"]
    ledger = await rows(svc)
    assert ledger[1] == ("delivered", None, told_at)
    assert ledger[2][:2] == ("failed", "not delivered: UNDELIV")
    assert ledger[3][0] == ledger[4][0] == "delivered"
    assert [ledger[i][0] for i in (5, 6)] == ["sent", "sent"]
    # One event per row moved, none for the rest.
    assert sorted(await events(svc)) == [(1, "delivered"), (2, "failed"), (3, "delivered"), (4, "delivered")]


async def test_late_and_out_of_order_receipts_change_nothing(svc: Services) -> None:
    await record(svc, "sms", [receipt(1, True), receipt(2, False)])
    before = await rows(svc)
    # A late failure for a delivered message, a late delivery for a failed one, and a duplicate:
    # only `sent` rows move, so nothing does; the ids are known, so none is reported unknown.
    assert await record(svc, "sms", [receipt(1, False, code="EXPIRED"), receipt(2, True), receipt(1, True)]) == []
    assert await rows(svc) == before
    assert sorted(await events(svc)) == [(1, "delivered"), (2, "failed")]
    # A receipt for another channel's message id with the same text is not this one.
    assert await record(svc, "email", [receipt(3, True)]) == [message_id(3)]
    assert (await rows(svc))[3][0] == "sent"


async def test_a_receipt_that_beat_its_row_applies_when_sent_again(svc: Services) -> None:
    assert await record(svc, "sms", [receipt(7, True)]) == [message_id(7)]
    async with svc.db.write() as conn:
        await seed_ledger(conn, 1, now(), first=7)
    assert await record(svc, "sms", [receipt(7, True)]) == []
    assert (await rows(svc))[7][0] == "delivered"


async def test_a_row_left_unknown_is_settled_by_the_receipt_naming_its_request_and_number(
        svc: Services, settings: Settings) -> None:
    mark_key = provider_named(settings, "generic").mark_key
    async with svc.db.write() as conn:
        await conn.execute(sa.update(deliveries).where(deliveries.c.id == 5).values(
            status="unknown", provider_ref=pending_ref(mark_key, "req-9", national_number(phone(5)))))
    told = SmsReceipt(message_id="gw-555", out_id="req-9", phone_number=phone(5), delivered=True)
    assert await record(svc, "sms", [told]) == []
    async with svc.db.read() as conn:
        row = (await conn.execute(sa.select(deliveries.c.status, deliveries.c.provider_ref)
                                  .where(deliveries.c.id == 5))).one()
    assert tuple(row) == ("delivered", "gw-555")
    assert await events(svc) == [(5, "delivered")]


async def test_a_push_spanning_both_ledgers_and_thousands_of_rows(svc: Services) -> None:
    at = now()
    async with svc.db.write() as conn:
        await seed_ledger(conn, 2_994, at, first=7)  # ids 7..3000: past SQLite's bound-parameter limits
        case_id = (await conn.execute(sa.insert(cases).values(
            department_id=1, case_no="GZ-R-1", service_item="s", applicant_name="a", locale="zh-CN",
            channels=["sms"], status="accepted", started_on=date(2026, 12, 1), page_token="t", short_code="c",
            created_at=at, updated_at=at).returning(cases.c.id))).scalar_one()
        await conn.execute(sa.insert(case_notifications).values(
            case_id=case_id, event_seq=1, channel="sms", status="sent", provider_ref="case-msg-1", created_at=at,
            updated_at=at, sent_at=at))
    pushed = [receipt(i, i % 3 != 0) for i in range(1, 3001)] + [receipt(0, False, ref="case-msg-1")]
    assert await record(svc, "sms", pushed) == []
    ledger = await rows(svc)
    assert sum(status == "delivered" for status, _, _ in ledger.values()) == 2000
    assert sum(status == "failed" for status, _, _ in ledger.values()) == 1000
    async with svc.db.read() as conn:
        case_row = (await conn.execute(sa.select(case_notifications.c.status, case_notifications.c.error))).one()
    assert tuple(case_row) == ("failed", "not delivered: UNDELIV")
    told = await events(svc)
    assert len(told) == 3001 and (None, "failed") in told  # the case's event names no subscriber


@pytest.mark.slow
def test_the_bench_quick(database_url: str, redis_url: str) -> None:
    # Its own database (the bench recreates it): the test's copy for SQLite, the bench schema for PostgreSQL.
    url = database_url if database_url.startswith("sqlite") else bench_receipts.DEFAULT_PG_URL
    # In a process of its own: on PostgreSQL the bench points every connection of its process at the
    # bench schema, which this test process's later tests must not inherit.
    done = subprocess.run([sys.executable, "-m", "bench.receipts", "--quick", "--database-url", url,
                           "--redis-url", redis_url], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # Rows and events checked by the bench itself; its rate depends on what else the machine runs.
    assert "receipts/s" in out and "old receipts/s" in out
    assert "ledger statuses" not in out and "callback events" not in out, out

"""The delivery ledger: bulk inserts, claims, outcomes, and finding work left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels.base import Recipient
from pushsvc.store.schema import deliveries, subscriber_channels, subscribers

D = deliveries.c
S = subscribers.c


def insert_ignoring_duplicates(conn: AsyncConnection, table: sa.Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows already present (a fan-out run again) are left as they are."""
    if rows:
        await conn.execute(insert_ignoring_duplicates(conn, deliveries), list(rows))


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    attempts: int


async def claim(
    conn: AsyncConnection, policy_id: int, channel: str, lo: int, hi: int, at: datetime, lease_expired_before: datetime
) -> list[Claimed]:
    """Move a batch's due deliveries to `sending`. Rows still `sending` from a worker that died
    (their lease ran out) are taken again: those, and only those, may be sent twice."""
    due = sa.or_(
        sa.and_(D.status == "queued", sa.or_(D.next_attempt_at.is_(None), D.next_attempt_at <= at)),
        # Held for quiet hours (digest rows have no next_attempt_at and wait for their digest).
        sa.and_(D.status == "held", D.next_attempt_at.is_not(None), D.next_attempt_at <= at),
        sa.and_(D.status == "sending", D.updated_at < lease_expired_before),
    )
    result = await conn.execute(
        sa.update(deliveries)
        .where(D.policy_id == policy_id, D.channel == channel, D.subscriber_id.between(lo, hi), due)
        # Taking a row held for quiet hours or pacing again is not a new attempt at sending it.
        .values(status="sending", attempts=D.attempts + sa.case((D.status == "held", 0), else_=1), updated_at=at)
        .returning(D.id, D.subscriber_id, D.attempts)
    )
    return [Claimed(*row) for row in result]


async def load_recipients(
    conn: AsyncConnection, claimed: Sequence[Claimed], channel: str
) -> tuple[list[Recipient], list[int]]:
    """Contacts as they are now; returns (recipients, delivery ids of those who have since left)."""
    by_subscriber = {c.subscriber_id: c.delivery_id for c in claimed}
    still_on = sa.exists().where(
        subscriber_channels.c.subscriber_id == S.id, subscriber_channels.c.channel == channel
    )
    rows = await conn.execute(
        sa.select(
            S.id, S.name, S.locale, S.email, S.phone, S.wechat_openid, S.wechat_webhook, S.quiet_start, S.quiet_end
        ).where(
            S.id.in_(list(by_subscriber)), S.status == "active", still_on
        )
    )
    recipients = [
        Recipient(
            delivery_id=by_subscriber[r.id],
            subscriber_id=r.id,
            name=r.name,
            locale=r.locale,
            email=r.email,
            phone=r.phone,
            wechat_openid=r.wechat_openid,
            wechat_webhook=r.wechat_webhook,
            quiet_start=r.quiet_start,
            quiet_end=r.quiet_end,
        )
        for r in rows
    ]
    reached = {r.subscriber_id for r in recipients}
    gone = [c.delivery_id for c in claimed if c.subscriber_id not in reached]
    return recipients, gone


async def write_outcomes(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """One executemany per call: each dict has id, status, error, provider_ref, next_attempt_at,
    sent_at, updated_at."""
    if not updates:
        return
    stmt = (
        sa.update(deliveries)
        .where(D.id == sa.bindparam("did"))
        .values(
            status=sa.bindparam("new_status"),
            error=sa.bindparam("new_error"),
            provider_ref=sa.bindparam("new_ref"),
            next_attempt_at=sa.bindparam("new_next"),
            sent_at=sa.bindparam("new_sent"),
            updated_at=sa.bindparam("new_updated"),
        )
    )
    await conn.execute(stmt, list(updates))


async def next_due(conn: AsyncConnection, policy_id: int, channel: str, lo: int, hi: int) -> datetime | None:
    """When the earliest row of a batch waiting for a retry or the end of quiet hours is due."""
    result = await conn.execute(
        sa.select(sa.func.min(D.next_attempt_at)).where(
            D.policy_id == policy_id,
            D.channel == channel,
            D.subscriber_id.between(lo, hi),
            D.status.in_(["queued", "held"]),
            D.next_attempt_at.is_not(None),
        )
    )
    return result.scalar_one_or_none()


async def release(conn: AsyncConnection, delivery_ids: Sequence[int], at: datetime) -> None:
    """Give claimed rows back to the queue (a worker stopping before it could send them)."""
    if delivery_ids:
        await conn.execute(
            sa.update(deliveries)
            .where(D.id.in_(list(delivery_ids)), D.status == "sending")
            .values(status="queued", attempts=D.attempts - 1, updated_at=at)
        )


async def stale_work(
    conn: AsyncConnection, queued_before: datetime, sending_before: datetime
) -> AsyncIterator[tuple[int, str, int]]:
    """(policy, channel, subscriber) of deliveries nobody seems to be working on, in order."""
    stale = sa.or_(
        sa.and_(
            D.status == "queued",
            D.updated_at < queued_before,
            sa.or_(D.next_attempt_at.is_(None), D.next_attempt_at < queued_before),
        ),
        sa.and_(D.status == "held", D.next_attempt_at < queued_before),
        sa.and_(D.status == "sending", D.updated_at < sending_before),
    )
    query = (
        sa.select(D.policy_id, D.channel, D.subscriber_id)
        .where(D.status.in_(["queued", "sending", "held"]), stale)
        .order_by(D.policy_id, D.channel, D.subscriber_id)
    )
    result = await conn.stream(query.execution_options(yield_per=5000))
    async for row in result:
        yield row.policy_id, row.channel, row.subscriber_id

"""The delivery ledger: bulk inserts, claims, outcomes, lifecycle notices, digests' rows, and
finding work left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.messages import Recipient
from pushsvc.store.bulk import insert_rows, update_rows
from pushsvc.store.callbacks import ledger_events
from pushsvc.store.schema import UTCDateTime, deliveries, policy_notices, subscriber_channels, subscribers

D = deliveries.c
S = subscribers.c
RECEIVED = ("sent", "delivered")
# write_outcomes' columns and the keys core.retry.ledger_update gives them.
OUTCOME_VALUES = {"status": "new_status", "attempts": "new_attempts", "error": "new_error", "provider_ref": "new_ref",
                  "next_attempt_at": "new_next", "sent_at": "new_sent", "updated_at": "new_updated",
                  "provider": "new_provider"}
_IN_CHUNK = 1000  # ids per IN list: far below either backend's limit on bound parameters


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows already present (a fan-out run again) are left as they are."""
    await insert_rows(conn, deliveries, rows, ignore_duplicates=True)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    attempts: int


async def claim(
    conn: AsyncConnection, policy_id: int, notice: int, channel: str, lo: int, hi: int, at: datetime,
    lease_expired_before: datetime,
) -> list[Claimed]:
    """Move a batch's due deliveries to `sending`. Rows still `sending` from a worker that died
    (their lease ran out) are taken again: those, and only those, may be sent twice. A claim is
    no attempt: attempts are counted when an outcome is written (core.retry.ledger_update), so a
    row given back unsent keeps its count and no count is ever taken back."""
    due = sa.or_(
        sa.and_(D.status == "queued", sa.or_(D.next_attempt_at.is_(None), D.next_attempt_at <= at)),
        # Held for quiet hours or the provider's pace (digest rows have a status of their own).
        sa.and_(D.status == "held", D.next_attempt_at <= at),
        sa.and_(D.status == "sending", D.updated_at < lease_expired_before),
    )
    result = await conn.execute(
        sa.update(deliveries)
        .where(D.policy_id == policy_id, D.notice == notice, D.channel == channel, D.subscriber_id.between(lo, hi),
               due)
        .values(status="sending", updated_at=at)
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
    # Rows unpacked by position: attribute access on SQLAlchemy rows cost more than the query.
    recipients = [
        Recipient(by_subscriber[sid], sid, name, locale, email, phone, openid, webhook, quiet_start, quiet_end)
        for sid, name, locale, email, phone, openid, webhook, quiet_start, quiet_end in rows
    ]
    reached = {r.subscriber_id for r in recipients}
    gone = [c.delivery_id for c in claimed if c.subscriber_id not in reached]
    return recipients, gone


async def write_outcomes(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """One statement per call: each dict as made by core.retry.ledger_update. Only rows still
    `sending` change: an outcome coming late (its claim's lease ran out and another run took the
    row) never puts back a row already settled, above all one written `sent`. The changes are told
    to callbacks in the same transaction."""
    await update_rows(conn, deliveries, updates, key=("id", "did"), values=OUTCOME_VALUES, only=D.status == "sending")
    await ledger_events(conn, deliveries.name, updates)


async def next_due(
    conn: AsyncConnection, policy_id: int, notice: int, channel: str, lo: int, hi: int
) -> datetime | None:
    """When the earliest row of a batch waiting for a retry or the end of quiet hours is due."""
    result = await conn.execute(
        sa.select(sa.func.min(D.next_attempt_at)).where(
            D.policy_id == policy_id,
            D.notice == notice,
            D.channel == channel,
            D.subscriber_id.between(lo, hi),
            D.status.in_(["queued", "held"]),
            D.next_attempt_at.is_not(None),
        )
    )
    return result.scalar_one_or_none()


async def release(conn: AsyncConnection, delivery_ids: Sequence[int], at: datetime) -> None:
    """Give claimed rows that were never handed to a channel back to the queue (a job stopping
    before it could send them); attempts stay as they are. Rows with an outcome written are no
    longer `sending` and stay as they are."""
    for start in range(0, len(delivery_ids), _IN_CHUNK):
        await conn.execute(
            sa.update(deliveries)
            .where(D.id.in_(list(delivery_ids[start : start + _IN_CHUNK])), D.status == "sending")
            .values(status="queued", next_attempt_at=None, updated_at=at)
        )


async def stale_work(
    conn: AsyncConnection, queued_before: datetime, sending_before: datetime
) -> AsyncIterator[tuple[int, int, str, int]]:
    """(policy, notice, channel, subscriber) of deliveries nobody seems to be working on, in order."""
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
        sa.select(D.policy_id, D.notice, D.channel, D.subscriber_id)
        .where(D.status.in_(["queued", "sending", "held"]), stale)
        .order_by(D.policy_id, D.notice, D.channel, D.subscriber_id)
    )
    result = await conn.stream(query.execution_options(yield_per=5000))
    async for row in result:
        yield row.policy_id, row.notice, row.channel, row.subscriber_id


# -- lifecycle notices ---------------------------------------------------------------------------


async def insert_notice(
    conn: AsyncConnection, policy_id: int, kind: str, revision: int, details: dict[str, Any], at: datetime
) -> int | None:
    """Record the policy's next notice and queue it for everyone who received the policy, on the
    channel they received it: one INSERT ... SELECT from the ledger. None, and nothing written, when
    the policy reached nobody. Call after locking the policy row (an UPDATE of it) in the same
    transaction, so that two notices cannot take the same number."""
    received = sa.and_(D.policy_id == policy_id, D.notice == 0, D.status.in_(RECEIVED))
    if not (await conn.execute(sa.select(sa.exists().where(received)))).scalar():
        return None
    last = await conn.execute(
        sa.select(sa.func.max(policy_notices.c.seq)).where(policy_notices.c.policy_id == policy_id)
    )
    seq = (last.scalar() or 0) + 1
    await conn.execute(sa.insert(policy_notices).values(
        policy_id=policy_id, seq=seq, kind=kind, revision=revision, details=details, created_at=at
    ))
    stamp = sa.literal(at, UTCDateTime())
    await conn.execute(sa.insert(deliveries).from_select(
        ["policy_id", "notice", "subscriber_id", "channel", "status", "attempts", "created_at", "updated_at"],
        sa.select(D.policy_id, sa.literal(seq, sa.SmallInteger()), D.subscriber_id, D.channel,
                  sa.literal("queued"), sa.literal(0, sa.SmallInteger()), stamp, stamp).where(received),
    ))
    return seq


async def notice_recipients(conn: AsyncConnection, policy_id: int, seq: int) -> AsyncIterator[tuple[int, str]]:
    """(subscriber, channel) of a notice's rows, in subscriber order."""
    result = await conn.stream(
        sa.select(D.subscriber_id, D.channel)
        .where(D.policy_id == policy_id, D.notice == seq)
        .order_by(D.subscriber_id)
        .execution_options(yield_per=5000)
    )
    async for row in result:
        yield row.subscriber_id, row.channel


async def cancel_unsent(conn: AsyncConnection, policy_id: int, reason: str, at: datetime) -> None:
    """A policy no longer in force is not pushed as news: what still waits to be sent (digest
    rows too) fails with `reason`. Rows already being sent are not stopped."""
    await conn.execute(
        sa.update(deliveries)
        .where(D.policy_id == policy_id, D.status.in_(["queued", "held", "digest"]))
        .values(status="failed", error=reason, next_attempt_at=None, updated_at=at)
    )


# -- digests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A policy waiting in the ledger for a subscriber's digest."""

    delivery_id: int
    subscriber_id: int
    channel: str
    policy_id: int
    attempts: int
    created_at: datetime
    frequency: str


def _due_for_digest(at: datetime) -> sa.ColumnElement[bool]:
    # No next_attempt_at: never tried; otherwise a temporary failure's retry time.
    return sa.and_(D.status == "digest", sa.or_(D.next_attempt_at.is_(None), D.next_attempt_at <= at))


def _waiting(frequencies: Sequence[str], before: datetime, at: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(D.notice == 0, _due_for_digest(at), D.created_at < before, S.frequency.in_(list(frequencies)))


async def digest_subscribers(
    conn: AsyncConnection, frequencies: Sequence[str], before: datetime, at: datetime, after: int, limit: int
) -> list[int]:
    """The next `limit` subscribers (ids above `after`) with rows waiting for a digest since before
    `before` and due at `at`."""
    rows = await conn.execute(
        sa.select(D.subscriber_id)
        .join(subscribers, S.id == D.subscriber_id)
        .where(_waiting(frequencies, before, at), D.subscriber_id > after)
        .group_by(D.subscriber_id)
        .order_by(D.subscriber_id)
        .limit(limit)
    )
    return list(rows.scalars())


async def waiting_for_digest(
    conn: AsyncConnection, frequencies: Sequence[str], before: datetime, at: datetime, lo: int, hi: int
) -> list[Waiting]:
    rows = await conn.execute(
        sa.select(D.id, D.subscriber_id, D.channel, D.policy_id, D.attempts, D.created_at, S.frequency)
        .join(subscribers, S.id == D.subscriber_id)
        .where(_waiting(frequencies, before, at), D.subscriber_id.between(lo, hi))
        .order_by(D.subscriber_id, D.channel, D.policy_id)
    )
    return [Waiting(*row) for row in rows]


async def claim_for_digest(conn: AsyncConnection, delivery_ids: Sequence[int], at: datetime) -> set[int]:
    """Move due digest rows to `sending` (not yet an attempt: that is counted with the outcome);
    returns those taken. A row another run took first is not returned."""
    taken: set[int] = set()
    for start in range(0, len(delivery_ids), _IN_CHUNK):
        result = await conn.execute(
            sa.update(deliveries)
            .where(D.id.in_(list(delivery_ids[start : start + _IN_CHUNK])), _due_for_digest(at))
            .values(status="sending", updated_at=at)
            .returning(D.id)
        )
        taken.update(result.scalars())
    return taken

"""The queries behind the department report: the period's policies, their ledger counted in SQL
(one GROUP BY each for messages, subscribers and failure reasons), and the delivery times read as
one stream of numbers, since SQLite has no percentile function.

The figures' definitions are in `pushsvc.core.figures`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.figures import ChannelFigures, DepartmentRef, ProviderFigures, Timing, failure_reason
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.store.schema import deliveries, departments, policies

P = policies.c
D = deliveries.c
REACHED = ("sent", "delivered")
PENDING = ("queued", "sending", "held", "digest")
_UNIX_EPOCH_JULIAN_DAY = 2440587.5
# Lifecycle notices (a revision, a repeal: `notice` > 0) share the ledger; the figures count the
# policy's own message only.
OWN_MESSAGE = D.notice == 0


def went_public() -> sa.ColumnElement[datetime]:
    """When a policy became public: its publish_at if it was scheduled, else when it was posted.
    (`published_at` marks the end of its fan-out, after the first messages went out.)"""
    return sa.case((P.publish_at > P.created_at, P.publish_at), else_=P.created_at)


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), LOCAL_ZONE)


@dataclass(frozen=True)
class Period:
    department_id: int
    first: date
    last: date  # included

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        # A scheduled policy has not gone public yet, whatever its date; a test key's policy never does.
        return [
            P.department_id == self.department_id,
            P.status != "scheduled",
            P.test.is_(sa.false()),
            went_public() >= local_midnight(self.first),
            went_public() < local_midnight(self.last + timedelta(days=1)),
        ]

    def ledger(self) -> list[sa.ColumnElement[bool]]:
        return [D.policy_id.in_(sa.select(P.id).where(*self.clauses())), OWN_MESSAGE]


async def department_refs(conn: AsyncConnection) -> list[DepartmentRef]:
    rows = await conn.execute(sa.select(departments.c.id, departments.c.name).order_by(departments.c.name))
    return [DepartmentRef(id=r.id, name=r.name) for r in rows]


async def period_policies(conn: AsyncConnection, period: Period) -> list[dict[str, Any]]:
    public = went_public().label("published_at")
    rows = await conn.execute(
        sa.select(P.id, P.title, P.doc_number, P.domain, P.status, P.produced_on, public)
        .where(*period.clauses())
        .order_by(public, P.id)
    )
    return [dict(r) for r in rows.mappings()]


@dataclass
class Ledger:
    """The raw figures of a period's policies, keyed by policy id."""

    channels: dict[int, dict[str, ChannelFigures]] = field(default_factory=dict)
    subscribers: dict[int, tuple[int, int]] = field(default_factory=dict)  # (matched, reached)
    seconds: dict[int, list[float]] = field(default_factory=dict)  # time to delivery per timed message
    sent_per_day: Counter[tuple[date, str]] = field(default_factory=Counter)


async def ledger(conn: AsyncConnection, period: Period, public_at: dict[int, datetime]) -> Ledger:
    """`public_at`: each policy's went_public(), from which its messages are timed."""
    out = Ledger()
    await _count_messages(conn, period, out)
    await _count_failures(conn, period, out)
    await _count_subscribers(conn, period, out)
    await _time_messages(conn, period, {pid: at.timestamp() for pid, at in public_at.items()}, out)
    return out


def _figures(out: Ledger, policy_id: int, channel: str) -> ChannelFigures:
    return out.channels.setdefault(policy_id, {}).setdefault(channel, ChannelFigures())


async def _count_messages(conn: AsyncConnection, period: Period, out: Ledger) -> None:
    # No bound parameters in the grouped expression: PostgreSQL would not see it as the same one.
    was_sent = D.sent_at.is_not(None).label("was_sent")
    rows = await conn.execute(
        sa.select(D.policy_id, D.channel, D.status, was_sent, sa.func.count())
        .where(*period.ledger())
        .group_by(D.policy_id, D.channel, D.status, was_sent)
    )
    for policy_id, channel, status, sent, n in rows:
        f = _figures(out, policy_id, channel)
        f.matched += n
        f.sent += n if sent else 0
        f.delivered += n if status == "delivered" else 0
        f.failed += n if status == "failed" else 0
        f.pending += n if status in PENDING else 0


async def _count_failures(conn: AsyncConnection, period: Period, out: Ledger) -> None:
    rows = await conn.execute(
        sa.select(D.policy_id, D.channel, D.error, sa.func.count())
        .where(D.status == "failed", *period.ledger())
        .group_by(D.policy_id, D.channel, D.error)
    )
    for policy_id, channel, error, n in rows:
        reasons = _figures(out, policy_id, channel).failed_by_reason
        reason, _ = failure_reason(error)
        reasons[reason] = reasons.get(reason, 0) + n


async def _count_subscribers(conn: AsyncConnection, period: Period, out: Ledger) -> None:
    reached = sa.func.count(sa.distinct(sa.case((D.status.in_(REACHED), D.subscriber_id))))
    rows = await conn.execute(
        sa.select(D.policy_id, sa.func.count(sa.distinct(D.subscriber_id)), reached)
        .where(*period.ledger())
        .group_by(D.policy_id)
    )
    out.subscribers = {policy_id: (matched, got) for policy_id, matched, got in rows}


def _epoch(conn: AsyncConnection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    """Seconds since 1970 of a stored (naive UTC) time, as a plain number: cheaper to stream than
    datetimes, and subtracting them is all the timing needs."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", column), sa.Float)
    # SQLite keeps the ISO text; julianday() reads it (to within microseconds at today's dates).
    return (sa.func.julianday(column, type_=sa.Float) - _UNIX_EPOCH_JULIAN_DAY) * 86400.0


async def _time_messages(conn: AsyncConnection, period: Period, public_at: dict[int, float], out: Ledger) -> None:
    sent_at = _epoch(conn, D.sent_at)
    reached_at = _epoch(conn, sa.func.coalesce(D.delivered_at, D.sent_at))
    query = sa.select(D.policy_id, D.channel, D.status, sent_at, reached_at).where(
        D.sent_at.is_not(None), *period.ledger()
    )
    days: dict[int, date] = {}  # hour since 1970 -> local date: Asia/Shanghai is a whole-hour zone
    sent_per_day: Counter[tuple[date, str]] = Counter()
    result = await conn.stream(query.execution_options(yield_per=10_000))
    async for partition in result.partitions():
        for policy_id, channel, status, sent, reached in partition:
            hour = int(sent // 3600)
            day = days.get(hour)
            if day is None:
                day = days[hour] = datetime.fromtimestamp(hour * 3600, LOCAL_ZONE).date()
            sent_per_day[day, channel] += 1
            if status in REACHED:
                # Clocks of different workers may disagree by a little: never a negative time.
                out.seconds.setdefault(policy_id, []).append(max(0.0, reached - public_at[policy_id]))
    out.sent_per_day = sent_per_day


async def sms_provider_figures(conn: AsyncConnection, period: Period) -> list[ProviderFigures]:
    """Per SMS provider the period's rows name: messages, delivered and failed (one GROUP BY), and
    the time from sent to delivered of each delivered message (streamed, as `_time_messages`)."""
    sms = [D.channel == "sms", D.provider.is_not(None), *period.ledger()]
    counts: dict[str, Counter[str]] = {}
    for provider, status, n in await conn.execute(
        sa.select(D.provider, D.status, sa.func.count()).where(*sms).group_by(D.provider, D.status)
    ):
        counts.setdefault(provider, Counter())[status] += n
    seconds: dict[str, list[float]] = {}
    took = _epoch(conn, D.delivered_at) - _epoch(conn, D.sent_at)
    result = await conn.stream(sa.select(D.provider, took).where(
        D.status == "delivered", D.sent_at.is_not(None), D.delivered_at.is_not(None), *sms
    ).execution_options(yield_per=10_000))
    async for partition in result.partitions():
        for provider, value in partition:
            # A receipt stamped by the provider's clock may come a little before our sent_at.
            seconds.setdefault(provider, []).append(max(0.0, value))
    return [
        ProviderFigures(provider=provider, messages=sum(c.values()), delivered=c["delivered"], failed=c["failed"],
                        delivery_time=Timing.of(seconds.get(provider, [])))
        for provider, c in sorted(counts.items())
    ]

"""A department's report for a period: per policy and in total, from the ledger's figures."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels import CHANNELS
from pushsvc.core.clock import now
from pushsvc.core.errors import NotFound
from pushsvc.core.figures import (
    AnswerTimes,
    ChannelFigures,
    DaySent,
    DepartmentRef,
    DepartmentReport,
    PolicyFigures,
    Ratings,
    TimelinessOut,
    Timing,
    combined,
    ratio,
    reading,
    totals,
)
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.timeliness import policy_timeliness
from pushsvc.store.db import Database
from pushsvc.store.departments import department_by_id
from pushsvc.store.feedback import question_times, rating_counts
from pushsvc.store.reports import Ledger, Period, ledger, local_midnight, period_policies, sms_provider_figures
from pushsvc.store.suppressions import suppressed_by_reason
from pushsvc.store.visits import visitors_by_channel


async def _answer_times(conn: AsyncConnection, period: Period) -> AnswerTimes:
    """The department's questions asked in the period (local dates), with their answer times."""
    asked = await question_times(conn, period.department_id, local_midnight(period.first),
                                 local_midnight(period.last + timedelta(days=1)))
    return AnswerTimes.of([(local_date(a), local_date(b) if b else None) for a, b in asked])


async def department_report(db: Database, department_id: int, first: date, last: date) -> DepartmentReport:
    async with db.read() as conn:
        department = await department_by_id(conn, department_id)
        if department is None:
            raise NotFound("no such department")
        return await build_report(conn, DepartmentRef(id=department["id"], name=department["name"]), first, last)


async def build_report(conn: AsyncConnection, department: DepartmentRef, first: date, last: date) -> DepartmentReport:
    period = Period(department.id, first, last)
    rows = await period_policies(conn, period)
    raw = await ledger(conn, period, {r["id"]: r["published_at"] for r in rows})
    figures = [_policy_figures(row, raw) for row in rows]
    votes = await rating_counts(conn, [f.id for f in figures])
    for f in figures:
        f.ratings = Ratings.of(votes.get(f.id, (0, 0)))
    opened = await visitors_by_channel(conn, [f.id for f in figures])
    for f in figures:
        f.reading = reading(opened.get(f.id, {}), {ch: c.sent for ch, c in f.by_channel.items()})
    every_time = [s for row in rows for s in raw.seconds.get(row["id"], [])]
    return DepartmentReport(
        department=department,
        period_from=first,
        period_to=last,
        generated_at=now(),
        policies=figures,
        total=totals(figures, every_time, list(CHANNELS)),
        sent_per_day=_days(raw),
        suppressed_by_reason=await suppressed_by_reason(conn, period),
        ratings=Ratings(useful=sum(f.ratings.useful for f in figures), not_useful=sum(f.ratings.not_useful for f in figures)),
        questions=await _answer_times(conn, period),
        sms_providers=await sms_provider_figures(conn, period),
    )


def _policy_figures(row: dict[str, Any], raw: Ledger) -> PolicyFigures:
    own = raw.channels.get(row["id"], {})
    by_channel = {ch: combined([own.get(ch, ChannelFigures())]) for ch in CHANNELS}
    matched, reached = raw.subscribers.get(row["id"], (0, 0))
    on_time = policy_timeliness(row["produced_on"], row["published_at"])  # published_at: went_public()
    return PolicyFigures(
        **{k: row[k] for k in ("id", "title", "doc_number", "domain", "status", "published_at")},
        matched=matched,
        reached=reached,
        reach_rate=ratio(reached, matched),
        messages=combined(by_channel.values()),
        by_channel=by_channel,
        time_to_delivery=Timing.of(raw.seconds.get(row["id"], [])),
        timeliness=TimelinessOut.of(on_time) if on_time else None,
    )


def _days(raw: Ledger) -> list[DaySent]:
    """Every day from the first to the last with a message sent, so a chart's gaps show."""
    if not raw.sent_per_day:
        return []
    days = sorted({day for day, _ in raw.sent_per_day})
    span = (days[-1] - days[0]).days + 1
    return [
        DaySent(day=day, by_channel={ch: raw.sent_per_day.get((day, ch), 0) for ch in CHANNELS})
        for day in (days[0] + timedelta(days=i) for i in range(span))
    ]

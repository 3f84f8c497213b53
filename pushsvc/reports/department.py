"""A department's report for a period: per policy and in total, from the ledger's figures."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels import CHANNELS
from pushsvc.core.clock import now
from pushsvc.core.errors import NotFound
from pushsvc.core.figures import (
    ChannelFigures,
    DaySent,
    DepartmentRef,
    DepartmentReport,
    PolicyFigures,
    TimelinessOut,
    Timing,
    combined,
    ratio,
    totals,
)
from pushsvc.core.timeliness import policy_timeliness
from pushsvc.store.db import Database
from pushsvc.store.departments import department_by_id
from pushsvc.store.reports import Ledger, Period, ledger, period_policies


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
    every_time = [s for row in rows for s in raw.seconds.get(row["id"], [])]
    return DepartmentReport(
        department=department,
        period_from=first,
        period_to=last,
        generated_at=now(),
        policies=figures,
        total=totals(figures, every_time, list(CHANNELS)),
        sent_per_day=_days(raw),
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

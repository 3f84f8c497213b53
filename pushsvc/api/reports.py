"""The figures a department is assessed on, as JSON or as the spreadsheet the assessment office
wants (`format=csv`). The admin page (`pushsvc.web.admin_pages`) shows the same report."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.api.auth import Caller, caller
from pushsvc.api.problems import Problem
from pushsvc.api.routing import Param, endpoint, int_param, json_response, services
from pushsvc.channels import CHANNELS
from pushsvc.core.errors import FieldError
from pushsvc.core.figures import (
    ChannelFigures,
    DaySent,
    DepartmentRef,
    DepartmentReport,
    PolicyFigures,
    TimelinessOut,
    Timing,
    combined,
    parse_period,
    ratio,
    totals,
)
from pushsvc.core.quiet_hours import local_date, local_time
from pushsvc.core.timeliness import policy_timeliness
from pushsvc.store.departments import department_by_id
from pushsvc.store.reports import Ledger, Period, ledger, period_policies
from pushsvc.store.subscribers import now

FORMATS = ("json", "csv")
DEPARTMENT_ID = Param("department_id", "the department (admin only; a department key reads its own)",
                      schema={"type": "integer", "minimum": 1})
REPORT_QUERY = (
    Param("from", "first local date of the period (default: 1 January this year)", schema={"type": "string", "format": "date"}),
    Param("to", "last local date of the period, included (default: today)", schema={"type": "string", "format": "date"}),
    DEPARTMENT_ID,
    Param("format", "json (default) or csv (UTF-8 with BOM, one row per policy and a total row)",
          schema={"type": "string", "enum": list(FORMATS)}),
)


def department_scope(request: web.Request, who: Caller, *, admin_must_name: bool) -> int | None:
    """The department a request is about: a department key's own (naming another is 403); the
    admin names one with department_id (required when `admin_must_name`, else None means all)."""
    named = int_param(request, "department_id", 0, lo=1, hi=2**63 - 1) if request.query.get("department_id") else None
    if who.is_admin:
        if named is None and admin_must_name:
            raise Problem(422, "the admin names the department", [FieldError("department_id", "is required with the admin token")])
        return named
    if named is not None and named != who.department_id:
        raise Problem(403, "a department key reads its own department's figures only",
                      [FieldError("department_id", "not this key's department")])
    return who.department_id


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


async def report_for(request: web.Request, department_id: int, first: date, last: date) -> DepartmentReport:
    async with services(request).db.read() as conn:
        department = await department_by_id(conn, department_id)
        if department is None:
            raise Problem(404, "no such department")
        return await build_report(conn, DepartmentRef(id=department["id"], name=department["name"]), first, last)


@endpoint("GET", "/v1/reports/department", summary="A department's figures for assessment over a period, per policy and in total",
          tag="reports", auth="department_or_admin", response=DepartmentReport, errors=(401, 403, 404, 422),
          query=REPORT_QUERY)
async def department_report(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format") or "json"
    if fmt not in FORMATS:
        raise Problem(422, "unknown format", [FieldError("format", "must be json or csv")])
    department_id = department_scope(request, caller(request), admin_must_name=True)
    assert department_id is not None
    first, last = parse_period(request.query.get("from"), request.query.get("to"), local_date(now()))
    report = await report_for(request, department_id, first, last)
    return csv_response(report) if fmt == "csv" else json_response(report)


# -- the spreadsheet -------------------------------------------------------------------------------

Row = PolicyFigures | None  # None: the total row
Column = tuple[str, Callable[[DepartmentReport, Row], Any]]


def _on_time(report: DepartmentReport, p: Row) -> str:
    if p is None:
        t = report.total.timeliness
        return f"{t.on_time}/{t.on_time + t.late}"
    return "" if p.timeliness is None else ("是" if p.timeliness.on_time else "否")


def _figures(report: DepartmentReport, p: Row) -> Any:
    return report.total if p is None else p


CHANNEL_NAMES = {"email": "邮件", "sms": "短信", "wechat": "微信"}


def _channel_column(channel: str, figure: str) -> Column:
    return (f"{CHANNEL_NAMES.get(channel, channel)} {channel}_{figure}",
            lambda r, p: getattr(_figures(r, p).by_channel[channel], figure))


COLUMNS: list[Column] = [
    ("政策ID policy_id", lambda r, p: "合计 total" if p is None else p.id),
    ("标题 title", lambda r, p: r.department.name if p is None else p.title),
    ("文号 doc_number", lambda r, p: "" if p is None else p.doc_number or ""),
    ("领域 domain", lambda r, p: "" if p is None else p.domain),
    ("状态 status", lambda r, p: "" if p is None else p.status),
    ("公开时间 published_at", lambda r, p: "" if p is None else local_time(p.published_at)),
    ("形成日期 produced_on", lambda r, p: "" if p is None or p.timeliness is None else p.timeliness.produced_on),
    ("工作日 working_days", lambda r, p: "" if p is None or p.timeliness is None else p.timeliness.working_days),
    ("按时 on_time", _on_time),
    ("超期工作日 late_by", lambda r, p: "" if p is None or p.timeliness is None else p.timeliness.late_by),
    ("匹配对象 matched", lambda r, p: _figures(r, p).matched),
    ("触达对象 reached", lambda r, p: _figures(r, p).reached),
    ("触达率 reach_rate", lambda r, p: _figures(r, p).reach_rate if _figures(r, p).reach_rate is not None else ""),
    ("消息 messages", lambda r, p: _figures(r, p).messages.matched),
    ("已发送 sent", lambda r, p: _figures(r, p).messages.sent),
    ("已送达 delivered", lambda r, p: _figures(r, p).messages.delivered),
    ("失败 failed", lambda r, p: _figures(r, p).messages.failed),
    ("处理中 pending", lambda r, p: _figures(r, p).messages.pending),
    *[_channel_column(ch, figure) for ch in CHANNELS for figure in ("matched", "sent", "delivered", "failed")],
    ("用时中位数(秒) median_seconds", lambda r, p: _blank(_figures(r, p).time_to_delivery.median_seconds)),
    ("用时95%(秒) p95_seconds", lambda r, p: _blank(_figures(r, p).time_to_delivery.p95_seconds)),
    ("失败原因 failure_reasons", lambda r, p: "; ".join(f"{k} ({n})" for k, n in _figures(r, p).messages.failed_by_reason.items())),
]


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell starting with = + - @ as a formula: titles and reasons are text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def report_csv(report: DepartmentReport) -> bytes:
    """UTF-8 with a byte-order mark, which Excel needs to read Chinese correctly."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in COLUMNS])
    for p in [*report.policies, None]:
        writer.writerow([_cell(get(report, p)) for _, get in COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def csv_response(report: DepartmentReport) -> web.Response:
    name = f"report-{report.department.id}-{report.period_from}-{report.period_to}.csv"
    return web.Response(body=report_csv(report), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

"""The report as the spreadsheet the assessment office wants: one row per policy and a total row."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from pushsvc.channels import CHANNELS
from pushsvc.core.figures import DepartmentReport, PolicyFigures
from pushsvc.core.quiet_hours import local_time

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


def csv_filename(report: DepartmentReport) -> str:
    return f"report-{report.department.id}-{report.period_from}-{report.period_to}.csv"

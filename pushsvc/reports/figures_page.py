"""What the pages showing the department report share (the operator's /admin page and the
console's figures): the period asked for, with its errors in the page's words, and the charts,
drawn as SVG on the server (`pushsvc.core.charts`) so the pages run no script."""

from __future__ import annotations

from datetime import date

from pushsvc.channels import CHANNELS
from pushsvc.core.charts import Group, Series, bar_groups, stacked_columns
from pushsvc.core.errors import ValidationFailed
from pushsvc.core.figures import BACKWARDS, DepartmentReport, parse_period
from pushsvc.i18n import Words

FUNNEL_MAX = 30  # policies in the funnel chart (the most recent); the table lists them all
REASONS_MAX = 15


def asked_period(raw_from: str | None, raw_to: str | None, today: date, t: Words) -> tuple[date, date, dict[str, str]]:
    """The period of the query's `from` and `to` (by default this year to today), and what is
    wrong with them (field -> message in the page's words; the default period then)."""
    try:
        first, last = parse_period(raw_from, raw_to, today)
    except ValidationFailed as exc:
        return date(today.year, 1, 1), today, {
            e.field: t.gettext("The end date cannot be before the start date.") if e.message == BACKWARDS
            else t.gettext("Enter a date as YYYY-MM-DD.") for e in exc.errors}
    return first, last, {}


def channel_names(t: Words) -> dict[str, str]:
    """The channels' short names on the figures pages (e-mail is 邮件 here, 电子邮件 on the forms)."""
    return {"email": t.pgettext("admin", "E-mail"), "sms": t.pgettext("admin", "SMS"),
            "wechat": t.pgettext("admin", "WeChat")}


def charts(report: DepartmentReport, t: Words) -> dict[str, str]:
    stages = [Series(t.gettext("Matched"), "stage-matched"), Series(t.gettext("Sent"), "stage-sent"),
              Series(t.gettext("Delivered"), "stage-delivered"), Series(t.gettext("Failed"), "stage-failed")]
    no_data, names = t.gettext("No data"), channel_names(t)
    recent = report.policies[-FUNNEL_MAX:]
    funnel = bar_groups(t.gettext("Delivery funnel per policy"), stages, [
        Group(p.title, [p.messages.matched, p.messages.sent, p.messages.delivered, p.messages.failed]) for p in recent
    ], empty=no_data)
    channels = list(CHANNELS)
    days = stacked_columns(
        t.gettext("Messages sent per day, by channel"), [Series(names.get(ch, ch), f"channel-{ch}") for ch in channels],
        [d.day.strftime("%m-%d") for d in report.sent_per_day],
        [[d.by_channel.get(ch, 0) for d in report.sent_per_day] for ch in channels],
        empty=no_data,
    )
    reasons = sorted(
        ((f"{names.get(ch, ch)} · {reason}", n) for ch, f in report.total.by_channel.items() for reason, n in f.failed_by_reason.items()),
        key=lambda item: (-item[1], item[0]),
    )[:REASONS_MAX]
    failures = bar_groups(t.gettext("Failure reasons"), [stages[-1]],
                          [Group(label, [n]) for label, n in reasons], empty=no_data)
    return {"funnel": funnel, "days": days, "reasons": failures}

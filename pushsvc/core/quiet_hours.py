"""Quiet hours: no SMS or personal WeChat message at night, local time (Asia/Shanghai)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")


def local_time(at: datetime) -> str:
    """A moment as people here read it: '2026-11-28 21:34'."""
    return at.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M")


def local_date(at: datetime) -> date:
    """The local date of a moment: what `today` means here is local_date(now())."""
    return at.astimezone(LOCAL_ZONE).date()


def parse_span(text: str) -> tuple[int, int]:
    """'21:00-08:00' -> (1260, 480), minutes after local midnight."""
    start, _, end = text.partition("-")
    return _minutes(start), _minutes(end)


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.strip().partition(":")
    value = int(hours) * 60 + int(minutes)
    if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise ValueError(f"not a time of day: {hhmm!r}")
    return value


def quiet_until(at: datetime, start: int, end: int) -> datetime | None:
    """When the quiet period that `at` falls in ends (UTC), or None if `at` is not in one.
    A span may cross midnight (21:00-08:00); start == end means no quiet hours."""
    if start == end:
        return None
    local = at.astimezone(LOCAL_ZONE)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    ends = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(timezone.utc)

"""Daily quotas: the providers' days are local days (Asia/Shanghai). The WeChat platform's template
message quota and the SMS providers' per-number limits start again at local midnight, so a message
beyond one waits until then."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from pushsvc.core.quiet_hours import LOCAL_ZONE, local_date


def quota_day(at: datetime) -> str:
    """The quota day `at` falls in, as it names a counter: '20261205'."""
    return local_date(at).strftime("%Y%m%d")


def quota_reset(at: datetime) -> datetime:
    """When the day's quotas start again after `at`: the next local midnight (UTC)."""
    midnight = datetime.combine(local_date(at) + timedelta(days=1), time(0), LOCAL_ZONE)
    return midnight.astimezone(timezone.utc)

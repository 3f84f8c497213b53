"""The service's clock: every time it stores is UTC (shown in Asia/Shanghai, see quiet_hours)."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)

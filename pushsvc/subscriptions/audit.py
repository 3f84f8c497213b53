"""Reading the audit log: a department its own entries (those of its keys), the admin every one,
by subscriber and by local days. Entries are written with pushsvc.store.audit.record."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.services import Services
from pushsvc.store import audit


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LOCAL_ZONE)


async def read_log(
    svc: Services, *, department_id: int | None, subscriber_id: int | None, first: date, last: date,
    after_id: int, limit: int, actor: str | None = None,
) -> list[dict[str, Any]]:
    """Entries from local day `first` to `last`, both included, in the order written (of `actor`
    and those under it, when given)."""
    async with svc.db.read() as conn:
        return await audit.entries(
            conn, department_id=department_id, subscriber_id=subscriber_id, since=_local_midnight(first),
            until=_local_midnight(last + timedelta(days=1)), after_id=after_id, limit=limit, actor=actor,
        )

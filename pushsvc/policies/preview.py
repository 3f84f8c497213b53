"""Who a policy would reach, counted by the fan-out's own matching query; nothing stored or sent.

Matching is city-wide, so the counts include records other departments and people supplied. A
count below SMALL is shown as "fewer than 5" unless the department supplied every one of them:
a narrow targeting must not tell a department that some other department's dibao recipient in one
street has a household of 7. (Zero is shown: none of zero records is another's.)
"""

from __future__ import annotations

from typing import Any

from pushsvc.core.models import FEWER_THAN_5, Count, PreviewOut
from pushsvc.policies.validation import Publisher, checked_policy
from pushsvc.services import Services
from pushsvc.store.reach_index import counted_by_sql

SMALL = 5


def shown(count: int, own: int) -> Count:
    return count if count >= SMALL or own == count else FEWER_THAN_5


async def preview(svc: Services, publisher: Publisher, raw: Any) -> PreviewOut:
    """Counted by the API process's reach index once it is built (equal to the SQL matcher's counts,
    in milliseconds over millions), by the fan-out's own matching in SQL until then."""
    checked = checked_policy(svc, publisher, raw)
    channels = list(dict.fromkeys(checked.data.channels))
    args = (checked.targeting, checked.data.domain, channels, publisher.department_id)
    counts = await svc.reach.counts(*args) if svc.reach is not None else None
    if counts is None:
        async with svc.db.read() as conn:
            counts = await counted_by_sql(conn, *args)
    return PreviewOut(total=shown(*counts.total),
                      by_channel={c: shown(*pair) for c, pair in counts.by_channel.items()},
                      by_audience={g: shown(*pair) for g, pair in counts.by_audience.items()})

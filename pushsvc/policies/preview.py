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
from pushsvc.store.matching import preview_queries

SMALL = 5


def shown(count: int, own: int) -> Count:
    return count if count >= SMALL or own == count else FEWER_THAN_5


async def preview(svc: Services, publisher: Publisher, raw: Any) -> PreviewOut:
    checked = checked_policy(svc, publisher, raw)
    channels = list(dict.fromkeys(checked.data.channels))
    total_q, channel_q, audience_q = preview_queries(checked.targeting, checked.data.domain, channels,
                                                     publisher.department_id)
    async with svc.db.read() as conn:
        total, own = (await conn.execute(total_q)).one()
        by_channel = {c: 0 for c in channels} | {c: shown(n, o) for c, n, o in await conn.execute(channel_q)}
        by_audience = ({g: 0 for g in checked.targeting.audiences}
                       | {g: shown(n, o) for g, n, o in await conn.execute(audience_q)})
    return PreviewOut(total=shown(total, own), by_channel=by_channel, by_audience=by_audience)

"""Who a policy would reach, counted by the fan-out's own matching query; nothing stored or sent."""

from __future__ import annotations

from typing import Any

from pushsvc.core.models import PreviewOut
from pushsvc.policies.validation import Publisher, checked_policy
from pushsvc.services import Services
from pushsvc.store.matching import preview_queries


async def preview(svc: Services, publisher: Publisher, raw: Any) -> PreviewOut:
    checked = checked_policy(svc, publisher, raw)
    channels = list(dict.fromkeys(checked.data.channels))
    total_q, channel_q, audience_q = preview_queries(checked.targeting, checked.data.domain, channels)
    async with svc.db.read() as conn:
        total = (await conn.execute(total_q)).scalar_one()
        by_channel = dict.fromkeys(channels, 0) | dict((await conn.execute(channel_q)).all())
        by_audience = dict.fromkeys(checked.targeting.audiences, 0) | dict((await conn.execute(audience_q)).all())
    return PreviewOut(total=total, by_channel=by_channel, by_audience=by_audience)

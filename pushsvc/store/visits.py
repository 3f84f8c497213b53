"""Visitors of a policy's page, counted per channel and day: numbers only, nobody in them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.bulk import insert_rows
from pushsvc.store.schema import policy_visits

V = policy_visits.c


async def count_visitor(conn: AsyncConnection, policy_id: int, channel: str, day: date) -> None:
    """One more visitor of the policy by `channel` on `day`."""
    await insert_rows(conn, policy_visits, [{"policy_id": policy_id, "channel": channel, "day": day, "visitors": 0}],
                      ignore_duplicates=True)
    await conn.execute(sa.update(policy_visits)
                       .where(V.policy_id == policy_id, V.channel == channel, V.day == day)
                       .values(visitors=V.visitors + 1))


async def visitors_by_channel(conn: AsyncConnection, policy_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """policy -> channel -> visitors, every day together (a person reading on two days counts twice)."""
    out: dict[int, dict[str, int]] = {}
    if not policy_ids:
        return out
    rows = await conn.execute(
        sa.select(V.policy_id, V.channel, sa.func.sum(V.visitors))
        .where(V.policy_id.in_(policy_ids))
        .group_by(V.policy_id, V.channel)
    )
    for policy_id, channel, visitors in rows:
        out.setdefault(policy_id, {})[channel] = int(visitors)
    return out

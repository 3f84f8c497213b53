"""Digests as sent: which policies of which period, for the page that lists them."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import digests


async def insert_digest(
    conn: AsyncConnection, period: str, period_start: date, period_end: date, policy_ids: list[int]
) -> int:
    result = await conn.execute(
        sa.insert(digests)
        .values(period=period, period_start=period_start, period_end=period_end, policy_ids=policy_ids,
                created_at=now())
        .returning(digests.c.id)
    )
    return result.scalar_one()


async def get_digest(conn: AsyncConnection, digest_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(digests).where(digests.c.id == digest_id))).mappings().first()
    return dict(row) if row else None

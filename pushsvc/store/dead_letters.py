"""The dead letters: failed deliveries across a department's policies, and putting the temporary
ones back in the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.figures import GAVE_UP_PREFIX
from pushsvc.store.schema import deliveries, policies

D = deliveries.c
P = policies.c


async def department_deliveries(
    conn: AsyncConnection, department_id: int | None, *, status: str, channel: str | None, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """A page of the ledger in id order; `department_id` None: every department's."""
    query = sa.select(
        D.id, D.policy_id, D.notice, D.subscriber_id, D.channel, D.status, D.attempts, D.error, D.updated_at
    ).where(D.status == status, D.id > after_id)
    if department_id is not None:
        query = query.where(D.policy_id.in_(sa.select(P.id).where(P.department_id == department_id)))
    if channel:
        query = query.where(D.channel == channel)
    rows = await conn.execute(query.order_by(D.id).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def requeue_temporary(conn: AsyncConnection, policy_id: int, at: datetime) -> list[tuple[int, str, int]]:
    """Put the policy's deliveries (its own message and its lifecycle notices) that failed only
    because they ran out of attempts at a temporary failure back in the queue, with a fresh set of
    attempts; returns their (notice, channel, subscriber), sorted. Permanent failures (a refused
    address, an invalid number, a failed receipt, a policy repealed before sending) stay failed.
    Requeued rows are no longer `failed`: a second call finds nothing."""
    result = await conn.execute(
        sa.update(deliveries)
        .where(D.policy_id == policy_id, D.status == "failed", D.error.like(GAVE_UP_PREFIX + "%"))
        .values(status="queued", attempts=0, next_attempt_at=None, updated_at=at)
        .returning(D.notice, D.channel, D.subscriber_id)
    )
    return sorted((notice, channel, sid) for notice, channel, sid in result)


async def failed_count(conn: AsyncConnection, policy_id: int) -> int:
    result = await conn.execute(sa.select(sa.func.count()).where(D.policy_id == policy_id, D.status == "failed"))
    return result.scalar_one()

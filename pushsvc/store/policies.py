"""Policies, their delivery figures, and Idempotency-Key records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.schema import deliveries, idempotency_keys, policies
from pushsvc.store.subscribers import now

P = policies.c
D = deliveries.c
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "held")


async def insert_policy(conn: AsyncConnection, department_id: int, fields: dict[str, Any], status: str) -> int:
    at = now()
    result = await conn.execute(
        sa.insert(policies)
        .values(department_id=department_id, status=status, created_at=at, updated_at=at, **fields)
        .returning(P.id)
    )
    return result.scalar_one()


async def get_policy(conn: AsyncConnection, policy_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(policies).where(P.id == policy_id))).mappings().first()
    return dict(row) if row else None


async def set_status(conn: AsyncConnection, policy_id: int, status: str, **extra: Any) -> None:
    await conn.execute(sa.update(policies).where(P.id == policy_id).values(status=status, updated_at=now(), **extra))


async def delivery_counts(conn: AsyncConnection, policy_id: int, channels: list[str]) -> dict[str, dict[str, int]]:
    counts = {ch: dict.fromkeys(STATUSES, 0) for ch in channels}
    rows = await conn.execute(
        sa.select(D.channel, D.status, sa.func.count()).where(D.policy_id == policy_id).group_by(D.channel, D.status)
    )
    for channel, status, n in rows:
        counts.setdefault(channel, dict.fromkeys(STATUSES, 0))[status] = n
    return counts


async def list_deliveries(
    conn: AsyncConnection,
    policy_id: int,
    *,
    status: str | None,
    channel: str | None,
    after_id: int,
    limit: int,
) -> list[dict[str, Any]]:
    query = sa.select(D.id, D.subscriber_id, D.channel, D.status, D.attempts, D.error, D.updated_at).where(
        D.policy_id == policy_id, D.id > after_id
    )
    if status:
        query = query.where(D.status == status)
    if channel:
        query = query.where(D.channel == channel)
    rows = await conn.execute(query.order_by(D.id).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def due_scheduled(conn: AsyncConnection, before: datetime) -> list[int]:
    rows = await conn.execute(sa.select(P.id).where(P.status == "scheduled", P.publish_at <= before))
    return list(rows.scalars())


async def unfinished_fanouts(conn: AsyncConnection, before: datetime) -> list[int]:
    rows = await conn.execute(sa.select(P.id).where(P.status == "publishing", P.updated_at < before))
    return list(rows.scalars())


async def idempotent_response(conn: AsyncConnection, department_id: int, key: str) -> dict[str, Any] | None:
    row = await conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.department_id == department_id, idempotency_keys.c.key == key
        )
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def remember_response(
    conn: AsyncConnection, department_id: int, key: str, request_hash: str, status_code: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        sa.insert(idempotency_keys).values(
            department_id=department_id,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response=response,
            created_at=now(),
        )
    )

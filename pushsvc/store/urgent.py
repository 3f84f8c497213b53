"""The right to publish urgent policies, a department's column the admin sets."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.schema import departments


async def set_may_send_urgent(conn: AsyncConnection, department_id: int, allowed: bool) -> bool:
    """Returns whether the department exists."""
    result = await conn.execute(
        sa.update(departments).where(departments.c.id == department_id).values(may_send_urgent=allowed)
    )
    return result.rowcount > 0


async def may_send_urgent(conn: AsyncConnection, department_id: int) -> bool | None:
    """None for a department that does not exist."""
    return (await conn.execute(
        sa.select(departments.c.may_send_urgent).where(departments.c.id == department_id)
    )).scalar_one_or_none()

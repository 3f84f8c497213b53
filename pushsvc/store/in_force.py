"""The policies in force on a day, with what "which policies apply to me" (/check) shows of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.schema import departments, policies

P = policies.c


async def in_force(conn: AsyncConnection, today: date) -> AsyncIterator[dict[str, Any]]:
    """Published or being sent (not with a test key), in force from a day not after `today` and
    not expired before it; newest first."""
    result = await conn.stream(
        sa.select(P.id, P.revision, P.title, P.doc_number, P.domain, P.targeting, P.effective_on, P.expires_on,
                  departments.c.name.label("department"))
        .select_from(policies.join(departments, departments.c.id == P.department_id))
        .where(P.status.in_(("publishing", "published")), P.test.is_(False), P.disclosure == "proactive",
               sa.or_(P.effective_on.is_(None), P.effective_on <= today),
               sa.or_(P.expires_on.is_(None), P.expires_on >= today))
        .order_by(P.id.desc())
        .execution_options(yield_per=2000)
    )
    async for row in result.mappings():
        yield dict(row)

"""Short links: one code per target path, issued once and never changed."""

from __future__ import annotations

import secrets
import string

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import short_links

# No look-alikes (0/O, 1/l/I): codes are read off posters and typed in by hand.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
LENGTH = 7


async def short_code(conn: AsyncConnection, target: str) -> str:
    """The code for `target` (a path such as /p/12), created on first request. Call inside a
    write transaction."""
    existing = await conn.execute(sa.select(short_links.c.code).where(short_links.c.target == target))
    code = existing.scalar_one_or_none()
    if code is not None:
        return code
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        taken = await conn.execute(sa.select(short_links.c.code).where(short_links.c.code == code))
        if taken.first() is None:
            await conn.execute(sa.insert(short_links).values(code=code, target=target, created_at=now()))
            return code


async def code_for(conn: AsyncConnection, target: str) -> str | None:
    row = await conn.execute(sa.select(short_links.c.code).where(short_links.c.target == target))
    return row.scalar_one_or_none()


async def target_of(conn: AsyncConnection, code: str) -> str | None:
    row = await conn.execute(sa.select(short_links.c.target).where(short_links.c.code == code))
    return row.scalar_one_or_none()

"""Departments and their API keys (stored as SHA-256 digests; the key itself is shown once)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import departments

KEY_PREFIX = "psk_"


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted digest is enough to make the stored value useless.
    return hashlib.sha256(key.encode()).hexdigest()


class DuplicateDepartment(Exception):
    pass


async def create_department(
    conn: AsyncConnection, name: str, domains: list[str], contact_email: str | None = None
) -> tuple[int, str]:
    """Returns (id, api key). The key is not stored."""
    exists = await conn.execute(sa.select(departments.c.id).where(departments.c.name == name))
    if exists.first() is not None:
        raise DuplicateDepartment(name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    result = await conn.execute(
        sa.insert(departments)
        .values(
            name=name,
            domains=domains,
            api_key_hash=hash_key(key),
            key_prefix=key[:10],
            contact_email=contact_email,
            created_at=now(),
        )
        .returning(departments.c.id)
    )
    return result.scalar_one(), key


async def department_by_key(conn: AsyncConnection, key: str) -> dict[str, Any] | None:
    row = await conn.execute(sa.select(departments).where(departments.c.api_key_hash == hash_key(key)))
    found = row.mappings().first()
    return dict(found) if found else None


async def department_by_id(conn: AsyncConnection, department_id: int) -> dict[str, Any] | None:
    row = await conn.execute(sa.select(departments).where(departments.c.id == department_id))
    found = row.mappings().first()
    return dict(found) if found else None

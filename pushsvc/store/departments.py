"""Departments, each created with a first API key (store.keys: a digest stored, the key shown once)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.keys import hash_key, issue_key, new_key
from pushsvc.store.schema import departments


class DuplicateDepartment(Exception):
    pass


async def create_department(
    conn: AsyncConnection, name: str, domains: list[str], contact_email: str | None = None
) -> tuple[int, str]:
    """Returns (id, its first api key, named "default"). The key is not stored."""
    exists = await conn.execute(sa.select(departments.c.id).where(departments.c.name == name))
    if exists.first() is not None:
        raise DuplicateDepartment(name)
    # departments.api_key_hash must hold a unique digest (see schema.py); the first key's row in
    # api_keys is what authenticates, so this one is of a key no one is given.
    result = await conn.execute(
        sa.insert(departments)
        .values(
            name=name,
            domains=domains,
            api_key_hash=hash_key(new_key("live")),
            key_prefix="-",
            contact_email=contact_email,
            created_at=now(),
        )
        .returning(departments.c.id)
    )
    department_id = result.scalar_one()
    _, key = await issue_key(conn, department_id, "default", "live")
    return department_id, key


async def department_by_id(conn: AsyncConnection, department_id: int) -> dict[str, Any] | None:
    row = await conn.execute(sa.select(departments).where(departments.c.id == department_id))
    found = row.mappings().first()
    return dict(found) if found else None

"""Departments' API keys: issued (the key returned once, its SHA-256 digest stored), looked up on
every request, listed, revoked."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import api_keys, departments

Kind = Literal["live", "test"]
PREFIXES: dict[str, str] = {"live": "psk_", "test": "psk_test_"}
KINDS = tuple(PREFIXES)
# Written at most this often per key: knowing the day a key was last used is enough, a write per
# request is not worth it.
LAST_USED_EVERY = timedelta(minutes=1)
LISTED = (api_keys.c.id, api_keys.c.name, api_keys.c.kind, api_keys.c.prefix, api_keys.c.created_at,
          api_keys.c.last_used_at, api_keys.c.revoked_at)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted digest is enough to make the stored value useless.
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(kind: Kind) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def shown_prefix(key: str, kind: Kind) -> str:
    """Enough of the key for a person to tell their keys apart, far too little to guess the rest."""
    return key[: len(PREFIXES[kind]) + 4]


async def issue_key(conn: AsyncConnection, department_id: int, name: str, kind: Kind) -> tuple[dict[str, Any], str]:
    """The new key's listed row and the key itself, which is not stored."""
    key = new_key(kind)
    result = await conn.execute(
        sa.insert(api_keys)
        .values(department_id=department_id, name=name, kind=kind, key_hash=hash_key(key),
                prefix=shown_prefix(key, kind), created_at=now())
        .returning(*LISTED)
    )
    return dict(result.mappings().one()), key


async def active_key_named(conn: AsyncConnection, department_id: int, name: str) -> bool:
    row = await conn.execute(sa.select(api_keys.c.id).where(
        api_keys.c.department_id == department_id, api_keys.c.name == name, api_keys.c.revoked_at.is_(None)))
    return row.first() is not None


async def department_by_key(conn: AsyncConnection, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(department, key row) for a key that is not revoked."""
    row = await conn.execute(
        sa.select(departments, api_keys.c.id.label("key_id"), api_keys.c.kind.label("key_kind"),
                  api_keys.c.last_used_at.label("key_last_used_at"))
        .join(api_keys, api_keys.c.department_id == departments.c.id)
        .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    )
    found = row.mappings().first()
    if found is None:
        return None
    department = {c.name: found[c.name] for c in departments.c}
    return department, {"id": found["key_id"], "kind": found["key_kind"], "last_used_at": found["key_last_used_at"]}


def due_for_touch(last_used_at: datetime | None, at: datetime) -> bool:
    return last_used_at is None or at - last_used_at >= LAST_USED_EVERY


async def touch(conn: AsyncConnection, key_id: int, at: datetime) -> None:
    """Records a use, unless another process recorded one within the minute."""
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id,
               sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= at - LAST_USED_EVERY))
        .values(last_used_at=at)
    )


async def list_keys(conn: AsyncConnection, department_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.select(*LISTED).where(api_keys.c.department_id == department_id).order_by(api_keys.c.id))
    return [dict(r) for r in rows.mappings()]


async def revoke_key(conn: AsyncConnection, department_id: int, key_id: int) -> dict[str, Any] | None:
    """The key's listed row once revoked (revoking twice keeps the first time); None if the
    department has no such key."""
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.department_id == department_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    row = await conn.execute(sa.select(*LISTED).where(api_keys.c.id == key_id, api_keys.c.department_id == department_id))
    found = row.mappings().first()
    return dict(found) if found else None

"""What the Official Account's followers need from the database: the QR codes' scenes, and the
subscribers an openid belongs to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import subscribers, wechat_scenes

S = subscribers.c
W = wechat_scenes.c


async def insert_scene(conn: AsyncConnection, department_id: int, domains: list[str], audiences: list[str]) -> int:
    result = await conn.execute(
        sa.insert(wechat_scenes).values(department_id=department_id, domains=domains, audiences=audiences,
                                        created_at=now()).returning(W.id)
    )
    return int(result.scalar_one())


async def set_code(conn: AsyncConnection, scene_id: int, ticket: str, url: str, expires_at: datetime | None) -> None:
    await conn.execute(sa.update(wechat_scenes).where(W.id == scene_id).values(ticket=ticket, url=url,
                                                                               expires_at=expires_at))


async def delete_scene(conn: AsyncConnection, scene_id: int) -> None:
    """A scene the platform gave no code for: nothing can name it."""
    await conn.execute(sa.delete(wechat_scenes).where(W.id == scene_id))


async def load_scene(conn: AsyncConnection, scene_id: int) -> dict[str, Any] | None:
    """The scene with its code; None for an unknown one or one with no code."""
    row = (await conn.execute(sa.select(wechat_scenes).where(W.id == scene_id, W.ticket.is_not(None)))).mappings().first()
    return dict(row) if row else None


async def followers(conn: AsyncConnection, openid: str) -> list[dict[str, Any]]:
    """The subscribers (not erased) holding `openid`: id, status, their robot webhook, and whether
    a person proved an e-mail address or phone number for them (`has_contact`)."""
    rows = await conn.execute(
        sa.select(S.id, S.status, S.wechat_webhook, S.supplied_by,
                  sa.or_(S.email.is_not(None), S.phone.is_not(None)).label("has_contact"))
        .where(S.wechat_openid == openid, S.status != "erased").order_by(S.id)
    )
    return [dict(row) for row in rows.mappings()]

"""Subscribers following policies, and a lifecycle notice's rows for the followers it did not reach."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.bulk import insert_rows
from pushsvc.store.deliveries import RECEIVED
from pushsvc.store.schema import (
    UTCDateTime,
    deliveries,
    policies,
    policy_follows,
    policy_notices,
    subscriber_channels,
    subscribers,
)

F = policy_follows.c
D = deliveries.c
S = subscribers.c
C = subscriber_channels.c


async def follow(conn: AsyncConnection, policy_id: int, subscriber_id: int, at: datetime) -> None:
    """Following twice is following once."""
    await insert_rows(conn, policy_follows, [{"policy_id": policy_id, "subscriber_id": subscriber_id,
                                              "created_at": at}], ignore_duplicates=True)


async def unfollow(conn: AsyncConnection, policy_id: int, subscriber_id: int) -> bool:
    """False if the subscriber did not follow the policy."""
    result = await conn.execute(sa.delete(policy_follows).where(F.policy_id == policy_id,
                                                                  F.subscriber_id == subscriber_id))
    return result.rowcount > 0


async def followed(conn: AsyncConnection, subscriber_id: int) -> list[dict[str, Any]]:
    """The policies the subscriber follows, newest follow first: id, title, status, followed_at."""
    P = policies.c
    rows = await conn.execute(
        sa.select(P.id, P.title, P.status, F.created_at.label("followed_at"))
        .select_from(policy_follows.join(policies, P.id == F.policy_id))
        .where(F.subscriber_id == subscriber_id)
        .order_by(F.created_at.desc(), P.id.desc())
    )
    return [dict(r) for r in rows.mappings()]


async def follows(conn: AsyncConnection, policy_id: int, subscriber_id: int) -> bool:
    found = await conn.execute(sa.select(F.policy_id).where(F.policy_id == policy_id, F.subscriber_id == subscriber_id))
    return found.first() is not None


async def followers(conn: AsyncConnection, policy_id: int) -> int:
    return (await conn.execute(sa.select(sa.func.count()).where(F.policy_id == policy_id))).scalar_one()


async def add_followers(
    conn: AsyncConnection, policy_id: int, seq: int | None, kind: str, revision: int, details: dict[str, Any],
    at: datetime,
) -> int | None:
    """Queue the policy's notice (`seq`, or None when it reached nobody) for its active followers
    whom the policy did not reach, on each of their channels the policy is sent by. Those it
    reached have their rows already (deliveries.insert_notice): nobody is told twice. Returns the
    notice's number, None when nobody at all is to be told. Call in the notice's transaction."""
    channels = (await conn.execute(sa.select(policies.c.channels).where(policies.c.id == policy_id))).scalar_one()
    reached = sa.select(D.subscriber_id).where(D.policy_id == policy_id, D.notice == 0, D.status.in_(RECEIVED))
    owed = (
        sa.select(C.subscriber_id, C.channel)
        .select_from(policy_follows.join(subscribers, S.id == F.subscriber_id)
                     .join(subscriber_channels, C.subscriber_id == F.subscriber_id))
        .where(F.policy_id == policy_id, S.status == "active", C.channel.in_(channels),
               F.subscriber_id.not_in(reached))
    )
    if (await conn.execute(sa.select(sa.exists(owed)))).scalar() is not True:
        return seq
    if seq is None:
        # Nobody received the policy, so deliveries.insert_notice numbered nothing: this notice is
        # the followers' alone, numbered as that function numbers one.
        last = await conn.execute(sa.select(sa.func.max(policy_notices.c.seq)).where(policy_notices.c.policy_id == policy_id))
        seq = (last.scalar() or 0) + 1
        await conn.execute(sa.insert(policy_notices).values(
            policy_id=policy_id, seq=seq, kind=kind, revision=revision, details=details, created_at=at))
    stamp = sa.literal(at, UTCDateTime())
    owed_rows = owed.subquery()
    await conn.execute(sa.insert(deliveries).from_select(
        ["policy_id", "notice", "subscriber_id", "channel", "status", "attempts", "created_at", "updated_at"],
        sa.select(sa.literal(policy_id, deliveries.c.policy_id.type), sa.literal(seq, sa.SmallInteger()),
                  owed_rows.c.subscriber_id, owed_rows.c.channel, sa.literal("queued"),
                  sa.literal(0, sa.SmallInteger()), stamp, stamp),
    ))
    return seq

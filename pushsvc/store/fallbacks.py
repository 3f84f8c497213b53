"""The ledger's fallback rows: when a subscriber's message on a channel fails for good, a row on the
policy's fallback channel for that channel (`fallback_of` = the failed row), for a subscriber who
is still active, allows that channel and has its contact.

Never a loop and never twice: a fallback row is not itself fallen back from, and the ledger's
uniqueness (policy x notice x subscriber x channel) leaves no room for a second row on a channel
the subscriber already has one on (a fallback before, or the policy's own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.bulk import insert_rows
from pushsvc.store.schema import deliveries, policies, subscriber_channels, subscribers

D = deliveries.c
S = subscribers.c
C = subscriber_channels.c

# What a subscriber needs on a channel to be sent anything there.
_HAS_CONTACT: dict[str, sa.ColumnElement[bool]] = {
    "email": S.email.is_not(None),
    "sms": S.phone.is_not(None),
    "wechat": sa.or_(S.wechat_openid.is_not(None), S.wechat_webhook.is_not(None)),
}
_IN_CHUNK = 1000


@dataclass(frozen=True)
class SendingTerms:
    """How a policy is sent: on the urgent lane or not, and its fallbacks ({channel: next})."""

    urgent: bool
    fallback: Mapping[str, str]


async def sending_terms(conn: AsyncConnection, policy_id: int) -> SendingTerms:
    row = (await conn.execute(sa.select(policies.c.priority, policies.c.fallback)
                              .where(policies.c.id == policy_id))).first()
    if row is None:
        return SendingTerms(False, {})
    return SendingTerms(row.priority == "urgent", row.fallback or {})


async def insert_fallbacks(conn: AsyncConnection, policy_id: int, notice: int, failed: Sequence[int],
                           fallback: Mapping[str, str], at: datetime) -> list[tuple[int, int, str, int]]:
    """Fallback rows (queued) for those of the `failed` rows (of the policy's notice) that failed
    for good on a channel with a fallback; returns (policy, notice, channel, subscriber) of the
    fallback rows waiting to be sent, in that order, as deliver jobs are cut."""
    waiting: list[tuple[int, int, str, int]] = []
    for i in range(0, len(failed), _IN_CHUNK):
        source = (await conn.execute(
            sa.select(D.id, D.subscriber_id, D.channel)
            .where(D.id.in_(list(failed[i:i + _IN_CHUNK])), D.policy_id == policy_id, D.notice == notice,
                   D.status == "failed", D.fallback_of.is_(None), D.channel.in_(list(fallback)))
        )).all()
        for target in sorted({fallback[r.channel] for r in source} & set(_HAS_CONTACT)):
            wanting = {r.subscriber_id: r.id for r in source if fallback[r.channel] == target}
            reachable = sorted(sid for (sid,) in await conn.execute(
                sa.select(S.id).where(
                    S.id.in_(list(wanting)), S.status == "active", _HAS_CONTACT[target],
                    sa.exists().where(C.subscriber_id == S.id, C.channel == target),
                )
            ))
            await insert_rows(conn, deliveries, [
                {"policy_id": policy_id, "notice": notice, "subscriber_id": sid, "channel": target,
                 "status": "queued", "attempts": 0, "fallback_of": wanting[sid], "created_at": at, "updated_at": at}
                for sid in reachable
            ], ignore_duplicates=True)
            if reachable:
                # Through the ledger's unique index: what this or an earlier run wrote and is still to send.
                result = await conn.execute(
                    sa.select(D.subscriber_id).where(
                        D.policy_id == policy_id, D.notice == notice, D.subscriber_id.in_(reachable),
                        D.channel == target, D.fallback_of.is_not(None), D.status == "queued")
                )
                waiting += [(policy_id, notice, target, sid) for (sid,) in result]
    return sorted(waiting)

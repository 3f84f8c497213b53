"""The suppression list: contacts nothing is sent to any more, why, and since when; the fan-out's
ledger rows of suppressed contacts marked `suppressed`; e-mail bounces applied to the ledgers.

A contact is kept as a keyed digest (`ContactKeys`) of its kind and its form in the subscribers
table (an e-mail address compared without case), so that erasure leaves it in no table while it
stays suppressed if someone adds it again. The fan-out digests its rows' contacts to match them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.verification import ContactKeys
from pushsvc.store.bulk import insert_rows
from pushsvc.store.callbacks import ledger_events
from pushsvc.store.reports import Period
from pushsvc.store.schema import case_notifications, cases, deliveries, subscribers, suppressions

ContactKind = Literal["email", "phone", "wechat"]
Reason = Literal["hard_bounce", "invalid_number", "wechat_refused", "reply_r", "complaint"]

X = suppressions.c
S = subscribers.c
D = deliveries.c
# The kind of contact each channel addresses (WeChat: the Official Account's openid).
CHANNEL_KIND: dict[str, ContactKind] = {"email": "email", "sms": "phone", "wechat": "wechat"}
_DETAIL_MAX = 100
_LOOKUP_CHUNK = 900  # under SQLite's bound-parameter limit


def contact_digest(keys: ContactKeys, kind: ContactKind, contact: str) -> str:
    return keys.digest(f"{kind}\x00{contact.lower() if kind == 'email' else contact}")


async def add(conn: AsyncConnection, keys: ContactKeys, kind: ContactKind, contacts: Iterable[str], reason: Reason,
              detail: str | None, at: datetime) -> None:
    """Suppress each contact; one already suppressed keeps its first reason and date."""
    digests = sorted({contact_digest(keys, kind, c) for c in contacts})
    rows = [{"kind": kind, "contact_digest": d, "reason": reason, "detail": detail[:_DETAIL_MAX] if detail else None,
             "created_at": at} for d in digests]
    await insert_rows(conn, suppressions, rows, ignore_duplicates=True)


async def lift(conn: AsyncConnection, keys: ContactKeys, kind: ContactKind, contact: str, at: datetime) -> bool:
    """Lift the contact's open suppression; whether there was one."""
    result = await conn.execute(
        sa.update(suppressions)
        .where(X.contact_digest == contact_digest(keys, kind, contact), X.lifted_at.is_(None))
        .values(lifted_at=at)
    )
    return result.rowcount > 0


async def open_ones(conn: AsyncConnection, kind: ContactKind | None, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Open suppressions by id, after `after_id`, of one kind of contact or all."""
    query = sa.select(suppressions).where(X.lifted_at.is_(None), X.id > after_id)
    if kind is not None:
        query = query.where(X.kind == kind)
    rows = await conn.execute(query.order_by(X.id).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def _open_reasons(conn: AsyncConnection, digests: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(digests), _LOOKUP_CHUNK):
        rows = await conn.execute(sa.select(X.contact_digest, X.reason).where(
            X.contact_digest.in_(digests[start:start + _LOOKUP_CHUNK]), X.lifted_at.is_(None)))
        found.update({digest: reason for digest, reason in rows})
    return found


async def mark_suppressed(conn: AsyncConnection, keys: ContactKeys, policy_id: int, first_sid: int, last_sid: int,
                          at: datetime) -> None:
    """The policy's new rows for subscribers `first_sid`..`last_sid` whose contact on the row's
    channel is suppressed become `suppressed`, the reason as their error: never sent, not failed."""
    if (await conn.execute(sa.select(X.id).where(X.lifted_at.is_(None)).limit(1))).first() is None:
        return  # the common case: nothing suppressed, nothing to read
    contact_of = {"email": S.email, "phone": S.phone, "wechat": S.wechat_openid}
    rows = await conn.execute(
        sa.select(D.id, D.channel, *contact_of.values())
        .join(subscribers, S.id == D.subscriber_id)
        .where(D.policy_id == policy_id, D.notice == 0, D.subscriber_id.between(first_sid, last_sid),
               D.channel.in_(list(CHANNEL_KIND)), D.status.in_(("queued", "digest")), D.attempts == 0)
    )
    by_digest: dict[str, list[int]] = {}
    for row in rows.mappings():
        kind = CHANNEL_KIND[row["channel"]]
        contact = row[contact_of[kind].name]
        if contact:
            by_digest.setdefault(contact_digest(keys, kind, contact), []).append(row["id"])
    reasons = await _open_reasons(conn, list(by_digest))
    updates = [{"did": did, "why": reason} for digest, reason in reasons.items() for did in by_digest[digest]]
    if updates:
        await conn.execute(
            sa.update(deliveries).where(D.id == sa.bindparam("did"))
            .values(status="suppressed", error=sa.bindparam("why"), updated_at=at),
            updates,
        )
        # Told to callbacks in the same transaction, like any other status change.
        await ledger_events(conn, deliveries.name,
                            [{"did": u["did"], "new_status": "suppressed", "new_updated": at} for u in updates])


async def suppressed_by_reason(conn: AsyncConnection, period: Period) -> dict[str, int]:
    """The period's policies' messages not sent because their contact is suppressed, by reason."""
    rows = await conn.execute(
        sa.select(D.error, sa.func.count()).where(*period.ledger(), D.status == "suppressed").group_by(D.error)
    )
    return {reason or "unknown": n for reason, n in rows}


# -- e-mail bounces ----------------------------------------------------------------------------------

_LEDGER_TABLES = {"d": deliveries, "c": case_notifications}


async def bounced_address(conn: AsyncConnection, ledger: str, record_id: int) -> str | None:
    """The e-mail address the record's message went to, as held now: a deliveries row's
    subscriber, a case notification's applicant, or the subscriber itself ("s")."""
    if ledger == "d":
        query = sa.select(S.email).join(deliveries, D.subscriber_id == S.id).where(D.id == record_id)
    elif ledger == "c":
        N = case_notifications.c
        query = sa.select(cases.c.email).join(case_notifications, N.case_id == cases.c.id).where(N.id == record_id)
    else:
        query = sa.select(S.email).where(S.id == record_id, S.status != "erased")
    return (await conn.execute(query)).scalar_one_or_none()


async def fail_bounced(conn: AsyncConnection, ledger: str, record_id: int, error: str, at: datetime) -> str | None:
    """The record's e-mail (and every row sharing its message, as a digest's rows do) becomes
    `failed` with `error`, if it is `sent` or `delivered`: a bounce can come after a receipt.
    Returns the message's ref when rows moved; a bounce repeated moves none."""
    table = _LEDGER_TABLES.get(ledger)
    if table is None:
        return None
    ref = (await conn.execute(sa.select(table.c.provider_ref).where(
        table.c.id == record_id, table.c.channel == "email"))).scalar_one_or_none()
    if ref is None:
        return None
    result = await conn.execute(
        sa.update(table)
        .where(table.c.provider_ref == ref, table.c.channel == "email", table.c.status.in_(("sent", "delivered")))
        .values(status="failed", error=error, next_attempt_at=None, updated_at=at)
    )
    return ref if result.rowcount else None

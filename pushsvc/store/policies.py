"""Policies, their revisions and lifecycle, their delivery figures, and Idempotency-Key records."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.reports import went_public
from pushsvc.store.schema import (
    deliveries,
    departments,
    idempotency_keys,
    policies,
    policy_notices,
    policy_revisions,
    short_links,
    subscribers,
)

P = policies.c
D = deliveries.c
N = policy_notices.c
# unknown: the provider may have taken it and could not say (a reply that never came); a receipt or
# a later query settles it, nothing sends it again.
# suppressed: never sent, the contact being on the suppression list (the error holds the reason).
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "held", "digest", "unknown", "suppressed")
# The API's counts keep the contract's keys: its `held` is "waiting for a digest or for the end of
# quiet hours", so rows waiting for a digest are counted there.
_COUNTED_AS = {"digest": "held"}
COUNTED = tuple(s for s in STATUSES if s not in _COUNTED_AS)
# A policy can be revised until it is no longer in force; repealed only when no fan-out is running
# (a running one would go on sending it).
REVISABLE_STATUSES = ("scheduled", "publishing", "published")
REPEALABLE_STATUSES = ("scheduled", "published")


async def insert_policy(conn: AsyncConnection, department_id: int, fields: dict[str, Any], status: str) -> int:
    at = now()
    result = await conn.execute(
        sa.insert(policies)
        .values(department_id=department_id, status=status, created_at=at, updated_at=at, **fields)
        .returning(P.id)
    )
    return result.scalar_one()


async def get_policy(conn: AsyncConnection, policy_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(policies).where(P.id == policy_id))).mappings().first()
    return dict(row) if row else None


async def set_status(conn: AsyncConnection, policy_id: int, status: str, *, expect: str | None = None,
                     **extra: Any) -> bool:
    """With `expect`, only from that status (a repeal may have come first); returns whether it moved."""
    query = sa.update(policies).where(P.id == policy_id)
    if expect is not None:
        query = query.where(P.status == expect)
    result = await conn.execute(query.values(status=status, updated_at=now(), **extra))
    return result.rowcount > 0


async def delivery_counts(
    conn: AsyncConnection, policy_id: int, channels: list[str]
) -> dict[int, dict[str, dict[str, int]]]:
    """notice -> channel -> status -> count; notice 0 (the policy itself) always has every channel."""
    counts: dict[int, dict[str, dict[str, int]]] = {0: {ch: dict.fromkeys(COUNTED, 0) for ch in channels}}
    rows = await conn.execute(
        sa.select(D.notice, D.channel, D.status, sa.func.count())
        .where(D.policy_id == policy_id)
        .group_by(D.notice, D.channel, D.status)
    )
    for notice, channel, status, n in rows:
        counts.setdefault(notice, {}).setdefault(channel, dict.fromkeys(COUNTED, 0))[_COUNTED_AS.get(status, status)] += n
    return counts


async def revisions(conn: AsyncConnection, policy_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(policy_revisions).where(policy_revisions.c.policy_id == policy_id)
        .order_by(policy_revisions.c.revision)
    )
    return [dict(r) for r in rows.mappings()]


async def notices(conn: AsyncConnection, policy_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.select(policy_notices).where(N.policy_id == policy_id).order_by(N.seq))
    return [dict(r) for r in rows.mappings()]


async def get_notice(conn: AsyncConnection, policy_id: int, seq: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(policy_notices).where(N.policy_id == policy_id, N.seq == seq))).mappings().first()
    return dict(row) if row else None


async def revise_policy(
    conn: AsyncConnection, policy: dict[str, Any], values: dict[str, Any], changes: list[dict[str, Any]]
) -> bool:
    """Apply `values` as the next revision of `policy` (as read) and record what changed. False if
    the policy moved on since it was read (revised, repealed or lapsed meanwhile)."""
    at = now()
    revision = policy["revision"] + 1
    result = await conn.execute(
        sa.update(policies)
        .where(P.id == policy["id"], P.revision == policy["revision"], P.status.in_(REVISABLE_STATUSES))
        .values(revision=revision, updated_at=at, **values)
    )
    if result.rowcount == 0:
        return False
    await conn.execute(
        sa.insert(policy_revisions).values(policy_id=policy["id"], revision=revision, changes=changes, created_at=at)
    )
    return True


async def repeal_policy(conn: AsyncConnection, policy_id: int, reason: str, repealed_on: date) -> bool:
    result = await conn.execute(
        sa.update(policies)
        .where(P.id == policy_id, P.status.in_(REPEALABLE_STATUSES))
        .values(status="repealed", repealed_on=repealed_on, repeal_reason=reason, updated_at=now())
    )
    return result.rowcount > 0


async def listing(conn: AsyncConnection, paths: dict[int, str]) -> dict[int, dict[str, Any]]:
    """What a digest lists of each policy: id -> title, doc_number, status, department and the short
    code of its page (`paths`: policy id -> page path)."""
    rows = await conn.execute(
        sa.select(P.id, P.title, P.doc_number, P.status, departments.c.name.label("department"))
        .join(departments, departments.c.id == P.department_id)
        .where(P.id.in_(list(paths)))
    )
    found = {r.id: dict(r._mapping) for r in rows}
    codes = dict((await conn.execute(
        sa.select(short_links.c.target, short_links.c.code).where(short_links.c.target.in_(list(paths.values())))
    )).all())
    for policy_id, row in found.items():
        row["code"] = codes.get(paths[policy_id])
    return found


async def due_lapses(conn: AsyncConnection, today: date) -> list[dict[str, Any]]:
    """Published policies whose last day in force (expires_on) is over."""
    rows = await conn.execute(
        sa.select(P.id, P.revision, P.expires_on, P.notify_on_lapse)
        .where(P.status == "published", P.expires_on < today)
        .order_by(P.id)
    )
    return [dict(r) for r in rows.mappings()]


async def list_deliveries(
    conn: AsyncConnection,
    policy_id: int,
    *,
    status: str | None,
    channel: str | None,
    after_id: int,
    limit: int,
    notice: int | None = None,
) -> list[dict[str, Any]]:
    query = sa.select(D.id, D.notice, D.subscriber_id, D.channel, D.status, D.attempts, D.error, D.updated_at,
                      D.fallback_of).where(
        D.policy_id == policy_id, D.id > after_id
    )
    if notice is not None:
        query = query.where(D.notice == notice)
    if status:
        query = query.where(D.status == status)
    if channel:
        query = query.where(D.channel == channel)
    rows = await conn.execute(query.order_by(D.id).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def find_policies(
    conn: AsyncConnection,
    *,
    department_id: int | None,
    status: str | None,
    domain: str | None,
    since: datetime | None,
    until: datetime | None,
    words: str | None,
    before_id: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Policies newest first (by id, below `before_id` when it is not 0), with their department's
    name; `department_id` None is every department's. `since`/`until` bound when each went public
    (as the report counts it); `words` is found in the title or the document number."""
    public = went_public()
    query = (
        sa.select(P.id, P.department_id, departments.c.name.label("department"), P.title, P.doc_number, P.domain,
                  P.status, P.revision, P.matched, P.test, P.publish_at, P.published_at, P.created_at,
                  public.label("public_at"))
        .join(departments, departments.c.id == P.department_id)
    )
    if department_id is not None:
        query = query.where(P.department_id == department_id)
    if before_id:
        query = query.where(P.id < before_id)
    if status:
        query = query.where(P.status == status)
    if domain:
        query = query.where(P.domain == domain)
    if since is not None:
        query = query.where(public >= since)
    if until is not None:
        query = query.where(public < until)
    if words:
        query = query.where(sa.or_(P.title.icontains(words, autoescape=True),
                                   P.doc_number.icontains(words, autoescape=True)))
    rows = await conn.execute(query.order_by(P.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def recipient_contacts(conn: AsyncConnection, subscriber_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The name and contacts of a policy's recipients as they are now (an erased record holds none)."""
    S = subscribers.c
    rows = await conn.execute(
        sa.select(S.id, S.name, S.email, S.phone, S.wechat_openid, S.wechat_webhook).where(S.id.in_(subscriber_ids))
    )
    return {r.id: dict(r._mapping) for r in rows}


async def due_scheduled(conn: AsyncConnection, before: datetime) -> list[int]:
    rows = await conn.execute(sa.select(P.id).where(P.status == "scheduled", P.publish_at <= before))
    return list(rows.scalars())


async def unfinished_fanouts(conn: AsyncConnection, before: datetime) -> list[int]:
    rows = await conn.execute(sa.select(P.id).where(P.status == "publishing", P.updated_at < before))
    return list(rows.scalars())


async def idempotent_response(conn: AsyncConnection, department_id: int, key: str) -> dict[str, Any] | None:
    row = await conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.department_id == department_id, idempotency_keys.c.key == key
        )
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def remember_response(
    conn: AsyncConnection, department_id: int, key: str, request_hash: str, status_code: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        sa.insert(idempotency_keys).values(
            department_id=department_id,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response=response,
            created_at=now(),
        )
    )

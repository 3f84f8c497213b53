"""The audit log: who read or changed whose personal data. `record` appends, in the caller's
transaction when given a connection (a change and its entry are written together or not at all);
`entries` pages through it; `purge_before` is the one delete, for the retention period."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.logs import REQUEST_ID
from pushsvc.store.bulk import insert_rows
from pushsvc.store.db import Database
from pushsvc.store.schema import audit_log

ADMIN = "admin"
# Years an entry is kept, then deleted by `pushsvc audit purge` (run daily from cron).
RETENTION_YEARS = 3
_DEPARTMENT_ACTOR = re.compile(r"department:(\d+)(?::|$)")


class HasDatabase(Protocol):
    db: Database


def department_actor(department_id: int, key_id: int | None) -> str:
    return f"department:{department_id}" if key_id is None else f"department:{department_id}:key:{key_id}"


def person(subscriber_id: int) -> str:
    """The subscriber acting on their own record (the manage pages, a message's unsubscribe link)."""
    return f"subscriber:{subscriber_id}"


def actor_department(actor: str) -> int | None:
    """The department an actor string acts for, if any: the one whose entries these are."""
    found = _DEPARTMENT_ACTOR.match(actor)
    return int(found.group(1)) if found else None


async def record(
    target: AsyncConnection | HasDatabase,
    actor: str,
    action: str,
    subscriber_ids: Iterable[int] | int | None,
    request_id: str | None = None,
    for_department: int | None = None,
    **detail: Any,
) -> None:
    """One entry per subscriber concerned (one with none for an act on no person). `request_id`
    defaults to the request the code runs for (pushsvc.logs); `detail` is stored as JSON.
    `for_department`: whose entries these are when the actor belongs to no department (a city
    overseer reading a department's records), so that the department sees who read them."""
    if isinstance(subscriber_ids, int):
        ids: list[int | None] = [subscriber_ids]
    else:
        ids = list(dict.fromkeys(subscriber_ids or ())) or [None]
    at = now()
    base = {"at": at, "actor": actor, "department_id": actor_department(actor) or for_department,
            "action": action, "request_id": request_id or REQUEST_ID.get(), "detail": detail or None}
    rows = [{**base, "subscriber_id": sid} for sid in ids]
    if isinstance(target, AsyncConnection):
        await insert_rows(target, audit_log, rows)
        return
    async with target.db.write() as conn:
        await insert_rows(conn, audit_log, rows)


async def entries(
    conn: AsyncConnection,
    *,
    department_id: int | None,
    subscriber_id: int | None,
    since: datetime | None,
    until: datetime | None,
    after_id: int,
    limit: int,
    actor: str | None = None,
) -> list[dict[str, Any]]:
    """In the order written; `department_id` None for every department's and the admin's. `actor`:
    that actor's entries and those of the actors under it (`department:3` takes its keys and staff)."""
    query = sa.select(audit_log).where(audit_log.c.id > after_id).order_by(audit_log.c.id).limit(limit)
    if actor is not None:
        query = query.where(sa.or_(audit_log.c.actor == actor, audit_log.c.actor.startswith(actor + ":", autoescape=True)))
    if department_id is not None:
        query = query.where(audit_log.c.department_id == department_id)
    if subscriber_id is not None:
        query = query.where(audit_log.c.subscriber_id == subscriber_id)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def purge_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """The retention delete: entries written before `cutoff`. The only delete of this table."""
    result = await conn.execute(sa.delete(audit_log).where(audit_log.c.at < cutoff))
    return int(result.rowcount or 0)

"""Delivery-status callbacks: each department's receiver, and the outbox of status changes posted to
it. Events are written by the store's ledger writers, in the transaction that changes the rows
(`ledger_events` after outcomes, `receipt_events` after receipts), only for departments with a receiver;
the poster (`pushsvc.delivery.callbacks`) reads a department's backlog in id order under a lease
on its receiver row, so one poster at a time keeps its events in order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import (
    callback_events,
    callbacks,
    case_notifications,
    cases,
    deliveries,
    policies,
    subscribers,
)

C, E = callbacks.c, callback_events.c
D, N = deliveries.c, case_notifications.c
# The status changes a receiver is told of; the others (queued, held, sending, unknown) are the
# service's own business.
TOLD = ("sent", "delivered", "failed", "suppressed")
_IN_CHUNK = 900  # ids per IN list: under SQLite's bound-parameter limit
_BACKLOG = sa.and_(E.sent_at.is_(None), E.given_up_at.is_(None))


# -- the receiver ---------------------------------------------------------------------------------


async def put_callback(conn: AsyncConnection, department_id: int, url: str, sealed_token: str, at: datetime) -> None:
    """Set (or replace) the department's receiver; a new one is tried at once."""
    values = {"url": url, "bearer_token": sealed_token, "last_error": None, "last_error_at": None,
              "next_attempt_at": None, "updated_at": at}
    result = await conn.execute(sa.update(callbacks).where(C.department_id == department_id).values(**values))
    if result.rowcount == 0:
        await conn.execute(sa.insert(callbacks).values(department_id=department_id, **values))


async def get_callback(conn: AsyncConnection, department_id: int) -> dict[str, Any] | None:
    """The receiver (its sealed token included) and its backlog: events not yet taken by it."""
    row = (await conn.execute(sa.select(callbacks).where(C.department_id == department_id))).mappings().first()
    if row is None:
        return None
    backlog = await conn.execute(
        sa.select(sa.func.count(), sa.func.min(E.created_at)).where(E.department_id == department_id, _BACKLOG))
    count, oldest = backlog.one()
    return {**row, "backlog": count, "oldest_waiting_at": oldest}


async def delete_callback(conn: AsyncConnection, department_id: int) -> bool:
    """Remove the receiver and what was waiting for it; whether there was one."""
    await conn.execute(sa.delete(callback_events).where(E.department_id == department_id, _BACKLOG))
    result = await conn.execute(sa.delete(callbacks).where(C.department_id == department_id))
    return result.rowcount > 0


# -- events, written with the change they tell of ---------------------------------------------------


def _event(row: Any) -> dict[str, Any]:
    return {
        "policy_id": row.policy_id, "notice": row.notice, "case_no": row.case_no,
        "subscriber_id": row.subscriber_id, "reference": row.reference, "channel": row.channel,
        "status": row.status, "status_at": row.updated_at.isoformat(),
        "error_code": row.error if row.status in ("failed", "suppressed") else None,
    }


def _delivery_rows() -> sa.Select[Any]:
    return (
        sa.select(D.id, D.policy_id, D.notice, sa.null().label("case_no"), D.subscriber_id,
                  # The department's own reference, for its own records only: another supplier's
                  # external_id is not this department's to learn.
                  sa.case((subscribers.c.department_id == policies.c.department_id, subscribers.c.external_id))
                  .label("reference"),
                  D.channel, D.status, D.updated_at, D.error, policies.c.department_id)
        .select_from(deliveries.join(policies, policies.c.id == D.policy_id)
                     .join(callbacks, C.department_id == policies.c.department_id)
                     .outerjoin(subscribers, subscribers.c.id == D.subscriber_id))
    )


def _case_rows() -> sa.Select[Any]:
    return (
        sa.select(N.id, sa.null().label("policy_id"), sa.null().label("notice"), cases.c.case_no,
                  sa.null().label("subscriber_id"), sa.null().label("reference"), N.channel, N.status,
                  N.updated_at, N.error, cases.c.department_id)
        .select_from(case_notifications.join(cases, cases.c.id == N.case_id)
                     .join(callbacks, C.department_id == cases.c.department_id))
    )


_ROWS = {deliveries.name: (_delivery_rows, D), case_notifications.name: (_case_rows, N)}


async def _insert(conn: AsyncConnection, rows: Sequence[Any], at: datetime) -> None:
    if rows:
        await conn.execute(sa.insert(callback_events), [
            {"department_id": r.department_id, "payload": _event(r), "created_at": at}
            for r in sorted(rows, key=lambda r: r.id)
        ])


async def ledger_events(conn: AsyncConnection, ledger: str, updates: Sequence[dict[str, Any]]) -> None:
    """Events for the rows of `ledger` that `updates` (core.retry.ledger_update's, just written)
    moved to a status receivers are told of. A row the write left alone (another run settled it
    first) no longer has the update's status and time, and tells nothing."""
    moved = {u["did"]: (u["new_status"], u["new_updated"]) for u in updates if u["new_status"] in TOLD}
    if not moved:
        return
    query, cols = _ROWS[ledger]
    ids = sorted(moved)
    rows = []
    for start in range(0, len(ids), _IN_CHUNK):
        found = await conn.execute(query().where(cols.id.in_(ids[start : start + _IN_CHUNK])))
        rows += [r for r in found if moved[r.id] == (r.status, r.updated_at)]
    await _insert(conn, rows, now())


async def receipt_events(conn: AsyncConnection, channel: str, message_ids: Sequence[str], at: datetime) -> None:
    """Events for the rows that receipts applied at `at` moved (store.receipts.apply_receipts sets
    their updated_at to it): delivered, or failed."""
    refs = sorted(set(message_ids))
    rows = []
    for ledger, (query, cols) in _ROWS.items():
        for start in range(0, len(refs), _IN_CHUNK):
            rows += list(await conn.execute(query().where(
                cols.provider_ref.in_(refs[start : start + _IN_CHUNK]), cols.channel == channel,
                cols.status.in_(("delivered", "failed")), cols.updated_at == at)))
    await _insert(conn, rows, at)


# -- the poster ----------------------------------------------------------------------------------


async def due_departments(conn: AsyncConnection, at: datetime) -> list[int]:
    """Departments with a backlog whose receiver is free (no poster's lease) and due."""
    waiting = sa.select(E.id).where(E.department_id == C.department_id, _BACKLOG).exists()
    rows = await conn.execute(
        sa.select(C.department_id).where(
            sa.or_(C.lease_until.is_(None), C.lease_until < at),
            sa.or_(C.next_attempt_at.is_(None), C.next_attempt_at <= at),
            waiting,
        ).order_by(C.department_id)
    )
    return list(rows.scalars())


async def take_lease(conn: AsyncConnection, department_id: int, at: datetime, until: datetime) -> dict[str, Any] | None:
    """The receiver, leased to the caller until `until`; None when another poster holds it."""
    result = await conn.execute(
        sa.update(callbacks)
        .where(C.department_id == department_id, sa.or_(C.lease_until.is_(None), C.lease_until < at))
        .values(lease_until=until)
    )
    if result.rowcount == 0:
        return None
    row = (await conn.execute(sa.select(callbacks).where(C.department_id == department_id))).mappings().first()
    return dict(row) if row else None


async def release_lease(conn: AsyncConnection, department_id: int) -> None:
    await conn.execute(sa.update(callbacks).where(C.department_id == department_id).values(lease_until=None))


async def give_up_before(conn: AsyncConnection, department_id: int, before: datetime, at: datetime) -> int:
    """The backlog's events older than `before` are given up on; how many."""
    result = await conn.execute(
        sa.update(callback_events)
        .where(E.department_id == department_id, _BACKLOG, E.created_at < before)
        .values(given_up_at=at)
    )
    return result.rowcount


async def head_of_backlog(conn: AsyncConnection, department_id: int, limit: int) -> list[dict[str, Any]]:
    """The department's oldest `limit` waiting events: {id, payload, attempts}."""
    rows = await conn.execute(
        sa.select(E.id, E.payload, E.attempts).where(E.department_id == department_id, _BACKLOG)
        .order_by(E.id).limit(limit)
    )
    return [dict(r) for r in rows.mappings()]


async def mark_posted(conn: AsyncConnection, event_ids: Sequence[int], at: datetime) -> None:
    for start in range(0, len(event_ids), _IN_CHUNK):
        await conn.execute(sa.update(callback_events).where(E.id.in_(list(event_ids[start : start + _IN_CHUNK])))
                           .values(sent_at=at, attempts=E.attempts + 1))


async def mark_refused(conn: AsyncConnection, department_id: int, event_ids: Sequence[int], error: str,
                       retry_at: datetime, at: datetime) -> None:
    """A post the receiver did not take: counted on its events; the receiver shows the error and
    is tried again at `retry_at`."""
    for start in range(0, len(event_ids), _IN_CHUNK):
        await conn.execute(sa.update(callback_events).where(E.id.in_(list(event_ids[start : start + _IN_CHUNK])))
                           .values(attempts=E.attempts + 1))
    await conn.execute(sa.update(callbacks).where(C.department_id == department_id).values(
        last_error=error[:200], last_error_at=at, next_attempt_at=retry_at))


async def purge_posted(conn: AsyncConnection, before: datetime) -> int:
    """Events posted (or given up on) before `before` are deleted: the outbox is not an archive."""
    result = await conn.execute(sa.delete(callback_events).where(
        E.created_at < before, sa.or_(E.sent_at.is_not(None), E.given_up_at.is_not(None))))
    return result.rowcount

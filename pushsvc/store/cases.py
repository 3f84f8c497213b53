"""Cases, their timeline and the applicants' notification ledger; the per-case sending lease."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.case_states import OPEN
from pushsvc.core.clock import now
from pushsvc.store.callbacks import ledger_events
from pushsvc.store.error_codes import keep_error_codes
from pushsvc.store.schema import case_events, case_notifications, cases, departments

C, E, N = cases.c, case_events.c, case_notifications.c
PENDING = ("queued", "held")  # a notification not sent and not given up on
APPLICANT_ERASED = "applicant erased"  # the error of notifications given up when their applicant was


class DuplicateCase(Exception):
    pass


async def insert_case(conn: AsyncConnection, row: dict[str, Any]) -> int:
    """Raises DuplicateCase when the department already has this case number."""
    exists = await conn.execute(
        sa.select(C.id).where(C.department_id == row["department_id"], C.case_no == row["case_no"])
    )
    if exists.first() is not None:
        raise DuplicateCase(row["case_no"])
    result = await conn.execute(sa.insert(cases).values(**row).returning(C.id))
    return int(result.scalar_one())


async def set_links(conn: AsyncConnection, case_id: int, token: str, code: str) -> dict[str, Any]:
    """Store the case page's token and short code (known once the id is) and return the case."""
    await conn.execute(sa.update(cases).where(C.id == case_id).values(page_token=token, short_code=code))
    return dict((await conn.execute(sa.select(cases).where(C.id == case_id))).mappings().one())


async def find_case(conn: AsyncConnection, department_id: int, case_no: str) -> dict[str, Any] | None:
    row = (await conn.execute(
        sa.select(cases).where(C.department_id == department_id, C.case_no == case_no)
    )).mappings().first()
    return dict(row) if row else None


async def lock_cases(conn: AsyncConnection, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The cases named by (department id, case number), held for this transaction (PostgreSQL;
    SQLite's write lock covers it) so that their events are numbered and checked one after the
    other. Locked in id order, so two API processes never wait on each other in a circle."""
    rows = await conn.execute(
        sa.select(cases).where(sa.tuple_(C.department_id, C.case_no).in_(list(keys))).order_by(C.id).with_for_update()
    )
    return {(r["department_id"], r["case_no"]): dict(r) for r in rows.mappings()}


async def events_by_id(conn: AsyncConnection, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    """Stored events named by (case id, event id)."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(case_events).where(sa.tuple_(E.case_id, E.event_id).in_(wanted)))
    return {(r["case_id"], r["event_id"]): dict(r) for r in rows.mappings()}


async def store_events(conn: AsyncConnection, events: Sequence[dict[str, Any]], notifications: Sequence[dict[str, Any]],
                       moved: Sequence[dict[str, Any]]) -> None:
    """New timeline rows, their notifications, and the cases they moved (`moved`: each case's
    id as `cid` with its new last_seq, status, latest_at and updated_at)."""
    if events:
        await conn.execute(sa.insert(case_events), list(events))
    if notifications:
        await conn.execute(sa.insert(case_notifications), list(notifications))
    if moved:
        await conn.execute(
            sa.update(cases).where(C.id == sa.bindparam("cid")).values(
                last_seq=sa.bindparam("last_seq"), status=sa.bindparam("status"),
                latest_at=sa.bindparam("latest_at"), updated_at=sa.bindparam("updated_at"),
            ),
            list(moved),
        )


async def timeline(conn: AsyncConnection, case_id: int) -> list[dict[str, Any]]:
    """The events in the order they happened, each with its notifications {channel: status}."""
    events = [dict(r) for r in (await conn.execute(
        sa.select(case_events).where(E.case_id == case_id).order_by(E.occurred_at, E.seq)
    )).mappings()]
    sent: dict[int, dict[str, str]] = {}
    for seq, channel, status in await conn.execute(
        sa.select(N.event_seq, N.channel, N.status).where(N.case_id == case_id)
    ):
        sent.setdefault(seq, {})[channel] = status
    for e in events:
        e["notifications"] = sent.get(e["seq"], {})
    return events


async def list_cases(conn: AsyncConnection, department_id: int, after_id: int, limit: int,
                     overdue_on: date | None) -> list[dict[str, Any]]:
    """A page of the department's cases in id order; with `overdue_on`, only those still open
    whose due date is before that day."""
    query = sa.select(cases).where(C.department_id == department_id, C.id > after_id)
    if overdue_on is not None:
        query = query.where(C.status.in_(sorted(OPEN)), C.due_on < overdue_on)
    rows = await conn.execute(query.order_by(C.id).limit(limit))
    return [dict(r) for r in rows.mappings()]


# -- sending -----------------------------------------------------------------------------------


async def claim_cases(conn: AsyncConnection, case_ids: Sequence[int], owner: str, at: datetime,
                      until: datetime) -> list[int]:
    """Take the sending lease of those of `case_ids` no live holder has; returns the ones taken."""
    result = await conn.execute(
        sa.update(cases)
        .where(C.id.in_(case_ids), sa.or_(C.lease_until.is_(None), C.lease_until < at))
        .values(lease_owner=owner, lease_until=until)
        .returning(C.id)
    )
    return [int(r[0]) for r in result]


async def release_cases(conn: AsyncConnection, case_ids: Sequence[int], owner: str) -> None:
    await conn.execute(
        sa.update(cases).where(C.id.in_(case_ids), C.lease_owner == owner).values(lease_owner=None, lease_until=None)
    )


async def pending_notifications(conn: AsyncConnection, case_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The cases' unsent notifications with their events, each case's in event order."""
    rows = await conn.execute(
        sa.select(N.id, N.case_id, N.event_seq, N.channel, N.attempts, N.next_attempt_at, E.status,
                  E.occurred_at, E.note)
        .join(case_events, sa.and_(E.case_id == N.case_id, E.seq == N.event_seq))
        .where(N.case_id.in_(case_ids), N.status.in_(PENDING))
        .order_by(N.case_id, N.event_seq, N.channel)
    )
    return [dict(r) for r in rows.mappings()]


async def cases_with_department(conn: AsyncConnection, case_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    rows = await conn.execute(
        sa.select(cases, departments.c.name.label("department"), departments.c.contact_email)
        .join(departments, departments.c.id == C.department_id)
        .where(C.id.in_(case_ids))
    )
    return {r["id"]: dict(r) for r in rows.mappings()}


async def case_with_department(conn: AsyncConnection, case_id: int) -> dict[str, Any] | None:
    return (await cases_with_department(conn, [case_id])).get(case_id)


async def write_notification_outcomes(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """`updates` as made by core.retry.ledger_update, one per notification settled (its attempts
    counted there: a notification not tried keeps its count)."""
    if updates:
        await conn.execute(
            sa.update(case_notifications).where(N.id == sa.bindparam("did")).values(
                status=sa.bindparam("new_status"), error=sa.bindparam("new_error"),
                provider_ref=sa.bindparam("new_ref"), next_attempt_at=sa.bindparam("new_next"),
                sent_at=sa.bindparam("new_sent"), updated_at=sa.bindparam("new_updated"),
                attempts=sa.bindparam("new_attempts"),
            ),
            list(updates),
        )
        await ledger_events(conn, case_notifications.name, updates)  # told to callbacks, same transaction


async def next_pending(conn: AsyncConnection, case_ids: Sequence[int], at: datetime) -> tuple[list[int], dict[int, datetime]]:
    """(the cases with a notification due now, when each other case's earliest waiting one is due)."""
    due_now = N.next_attempt_at.is_(None) | (N.next_attempt_at <= at)
    rows = await conn.execute(
        sa.select(N.case_id, sa.func.count().filter(due_now), sa.func.min(N.next_attempt_at))
        .where(N.case_id.in_(case_ids), N.status.in_(PENDING))
        .group_by(N.case_id)
    )
    due: list[int] = []
    waiting: dict[int, datetime] = {}
    for case_id, n_due, earliest in rows:
        if n_due:
            due.append(int(case_id))
        else:
            waiting[int(case_id)] = earliest
    return due, waiting


async def stale_cases(conn: AsyncConnection, before: datetime, at: datetime) -> list[int]:
    """Cases with a due notification nobody has touched since `before` (Redis lost the job, a
    worker died) and no live lease."""
    rows = await conn.execute(
        sa.select(N.case_id)
        .join(cases, C.id == N.case_id)
        .where(N.status.in_(PENDING), N.updated_at < before,
               N.next_attempt_at.is_(None) | (N.next_attempt_at <= at),
               C.lease_until.is_(None) | (C.lease_until < at))
        .distinct()
    )
    return [int(r[0]) for r in rows]


# -- time limits -------------------------------------------------------------------------------


async def alert_candidates(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Open cases with a time limit whose department has not been alerted yet."""
    rows = await conn.execute(
        sa.select(C.id, C.started_on, C.time_limit_days, C.due_on).where(
            C.status.in_(sorted(OPEN)), C.due_on.is_not(None), C.alerted_at.is_(None)
        )
    )
    return [dict(r) for r in rows.mappings()]


async def mark_alerted(conn: AsyncConnection, case_id: int, at: datetime | None) -> bool:
    """Set (or with None clear) the alert mark; True if this call set it: the one to send."""
    query = sa.update(cases).where(C.id == case_id)
    if at is not None:
        query = query.where(C.alerted_at.is_(None))
    return (await conn.execute(query.values(alerted_at=at))).rowcount == 1


async def erase_applicant(conn: AsyncConnection, department_id: int, case_no: str) -> bool:
    """The applicant's name, contacts and channels go, with the notes written to them and the
    provider replies beyond their codes; the case, its statuses and its times stay for the
    figures. Notifications not yet sent are given up: nobody is told anything more. False when
    the department has no such case."""
    case_id = (await conn.execute(
        sa.select(C.id).where(C.department_id == department_id, C.case_no == case_no)
    )).scalar_one_or_none()
    if case_id is None:
        return False
    await conn.execute(sa.update(cases).where(C.id == case_id).values(
        applicant_name="", email=None, phone=None, wechat_openid=None, channels=[], updated_at=now()))
    await conn.execute(sa.update(case_events).where(E.case_id == case_id).values(note=None))
    await conn.execute(sa.update(case_notifications).where(N.case_id == case_id, N.status.in_(PENDING)).values(
        status="failed", error=APPLICANT_ERASED, next_attempt_at=None, updated_at=now()))
    await keep_error_codes(conn, case_notifications, N.case_id == case_id)
    return True

"""Policy drafts and their steps (`policy_drafts`, `draft_events`): written, moved from one status
to the next only from the statuses it may leave (a compare-and-set, so two clicks or two reviewers
cannot both move it), and read by their department."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.store.schema import draft_events, policy_drafts, staff

DR = policy_drafts.c
EV = draft_events.c
# Who may approve a draft (and so whether a key's policy can wait for review at all).
REVIEWER_ROLES = ("approver", "department_admin")


async def insert_draft(conn: AsyncConnection, department_id: int, kind: str, policy_id: int | None,
                       body: Any, status: str, actor: str) -> int:
    """A new draft at version 1, with its first event (`saved`, or `submitted` for a key's policy)."""
    at = now()
    submitted = {"submitted_by": actor, "submitted_at": at} if status == "submitted" else {}
    draft_id: int = (await conn.execute(
        sa.insert(policy_drafts).values(department_id=department_id, kind=kind, policy_id=policy_id, body=body,
                                        status=status, version=1, created_by=actor, created_at=at,
                                        updated_at=at, **submitted).returning(DR.id)
    )).scalar_one()
    await add_event(conn, draft_id, actor, "submitted" if status == "submitted" else "saved", 1)
    return draft_id


async def get_draft(conn: AsyncConnection, draft_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(policy_drafts).where(DR.id == draft_id))).mappings().first()
    return dict(row) if row else None


async def list_drafts(conn: AsyncConnection, department_id: int, statuses: Sequence[str] = (),
                      limit: int = 100) -> list[dict[str, Any]]:
    """The department's drafts, the most recently changed first."""
    query = sa.select(policy_drafts).where(DR.department_id == department_id)
    if statuses:
        query = query.where(DR.status.in_(list(statuses)))
    rows = await conn.execute(query.order_by(DR.updated_at.desc(), DR.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


async def save_body(conn: AsyncConnection, draft_id: int, body: Any, version: int,
                    editable: Sequence[str]) -> bool:
    """The new body at version+1, only if the draft is still at `version` in an editable status."""
    result = await conn.execute(
        sa.update(policy_drafts)
        .where(DR.id == draft_id, DR.version == version, DR.status.in_(list(editable)))
        .values(body=body, version=version + 1, updated_at=now())
    )
    return result.rowcount > 0


async def move(conn: AsyncConnection, draft_id: int, leaving: Sequence[str], status: str,
               version: int | None = None, **columns: Any) -> bool:
    """Set `status` (and `columns`) only if the draft is in one of `leaving` (and at `version`)."""
    query = sa.update(policy_drafts).where(DR.id == draft_id, DR.status.in_(list(leaving)))
    if version is not None:
        query = query.where(DR.version == version)
    result = await conn.execute(query.values(status=status, updated_at=now(), **columns))
    return result.rowcount > 0


async def add_event(conn: AsyncConnection, draft_id: int, actor: str, action: str, version: int,
                    comment: str | None = None) -> None:
    await conn.execute(sa.insert(draft_events).values(draft_id=draft_id, at=now(), actor=actor, action=action,
                                                      version=version, comment=comment))


async def events(conn: AsyncConnection, draft_id: int) -> list[dict[str, Any]]:
    """The draft's steps, oldest first."""
    rows = await conn.execute(sa.select(draft_events).where(EV.draft_id == draft_id).order_by(EV.id))
    return [dict(r) for r in rows.mappings()]


async def has_reviewer(conn: AsyncConnection, department_id: int) -> bool:
    """Whether the department has someone active who can approve."""
    row = await conn.execute(
        sa.select(staff.c.id).where(staff.c.department_id == department_id, staff.c.role.in_(REVIEWER_ROLES),
                                    staff.c.disabled_at.is_(None)).limit(1)
    )
    return row.first() is not None

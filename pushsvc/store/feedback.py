"""The queries behind "was this useful? ask a question": ratings, questions, the department's
answers, the public Q&A of a policy page, the contacts' erasure, and the report's counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.schema import policies, policy_questions, policy_ratings

Q = policy_questions.c
R = policy_ratings.c
# Which questions an inbox shows.
State = Literal["all", "unanswered", "answered"]
STATES: tuple[State, ...] = ("unanswered", "answered", "all")


async def add_rating(conn: AsyncConnection, policy_id: int, useful: bool, at: datetime) -> None:
    await conn.execute(sa.insert(policy_ratings).values(policy_id=policy_id, useful=useful, created_at=at))


async def add_question(conn: AsyncConnection, policy_id: int, department_id: int, question: str,
                       contact_kind: str | None, contact: str | None, locale: str, at: datetime) -> int:
    result = await conn.execute(sa.insert(policy_questions).values(
        policy_id=policy_id, department_id=department_id, question=question, contact_kind=contact_kind,
        contact=contact, locale=locale, created_at=at).returning(Q.id))
    return int(result.scalar_one())


def _listed() -> sa.Select[Any]:
    return sa.select(*policy_questions.c, policies.c.title.label("policy_title")).join(
        policies, policies.c.id == Q.policy_id)


async def list_questions(conn: AsyncConnection, department_id: int | None, *, policy_id: int | None = None,
                         state: State = "all", before_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first, below `before_id` (0: from the newest); `department_id` None: every department's."""
    query = _listed().order_by(Q.id.desc()).limit(limit)
    if department_id is not None:
        query = query.where(Q.department_id == department_id)
    if policy_id is not None:
        query = query.where(Q.policy_id == policy_id)
    if state == "unanswered":
        query = query.where(Q.answered_at.is_(None))
    elif state == "answered":
        query = query.where(Q.answered_at.is_not(None))
    if before_id:
        query = query.where(Q.id < before_id)
    return [dict(r._mapping) for r in await conn.execute(query)]


async def get_question(conn: AsyncConnection, question_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(_listed().where(Q.id == question_id))).first()
    return dict(row._mapping) if row else None


async def set_answer(conn: AsyncConnection, question_id: int, answer: str, public: bool, actor: str,
                     at: datetime) -> bool:
    """Store the answer unless one was given already (True when this one was stored)."""
    result = await conn.execute(sa.update(policy_questions).where(Q.id == question_id, Q.answered_at.is_(None))
                                .values(answer=answer, public=public, answered_by=actor, answered_at=at))
    return result.rowcount == 1


async def answer_sent(conn: AsyncConnection, question_id: int, at: datetime, error: str | None) -> None:
    """What came of sending the answer: when it went, or why it did not."""
    await conn.execute(sa.update(policy_questions).where(Q.id == question_id).values(
        answer_sent_at=None if error else at, answer_error=error[:200] if error else None))


async def public_answers(conn: AsyncConnection, policy_id: int) -> list[dict[str, Any]]:
    """The policy's public Q&A, oldest answer first: never the contact."""
    rows = await conn.execute(sa.select(Q.id, Q.question, Q.answer, Q.answered_at)
                              .where(Q.policy_id == policy_id, Q.public.is_(sa.true()), Q.answered_at.is_not(None))
                              .order_by(Q.answered_at, Q.id))
    return [dict(r._mapping) for r in rows]


async def delete_question(conn: AsyncConnection, question_id: int) -> bool:
    result = await conn.execute(sa.delete(policy_questions).where(Q.id == question_id))
    return result.rowcount == 1


async def erase_contacts(conn: AsyncConnection, answered_before: datetime, asked_before: datetime,
                         at: datetime) -> int:
    """Clear the contacts of questions answered before `answered_before` (the answer had its chance
    to go out) and of those still unanswered that were asked before `asked_before`."""
    due = sa.or_(Q.answered_at < answered_before, sa.and_(Q.answered_at.is_(None), Q.created_at < asked_before))
    result = await conn.execute(sa.update(policy_questions).where(Q.contact.is_not(None), due)
                                .values(contact=None, contact_kind=None, contact_erased_at=at))
    return result.rowcount


async def rating_counts(conn: AsyncConnection, policy_ids: list[int]) -> dict[int, tuple[int, int]]:
    """policy id -> (useful, not useful)."""
    if not policy_ids:
        return {}
    rows = await conn.execute(sa.select(R.policy_id, R.useful, sa.func.count()).where(R.policy_id.in_(policy_ids))
                              .group_by(R.policy_id, R.useful))
    counts: dict[int, tuple[int, int]] = {}
    for policy_id, useful, n in rows:
        yes, no = counts.get(policy_id, (0, 0))
        counts[policy_id] = (yes + n, no) if useful else (yes, no + n)
    return counts


async def question_times(conn: AsyncConnection, department_id: int, since: datetime,
                         until: datetime) -> list[tuple[datetime, datetime | None]]:
    """(asked, answered or None) of the department's questions asked in [since, until)."""
    rows = await conn.execute(sa.select(Q.created_at, Q.answered_at).where(
        Q.department_id == department_id, Q.created_at >= since, Q.created_at < until))
    return [(r.created_at, r.answered_at) for r in rows]

"""Staff accounts and their console sessions (tables `staff` and `staff_sessions`: their comments
in schema.py are the design). The counters and one-time steps are changed by single conditional
UPDATEs, so two requests at once cannot both use one TOTP code or both miss a failure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.store.schema import departments, staff, staff_sessions


class DuplicateUsername(Exception):
    pass


# -- accounts ---------------------------------------------------------------------------------------


async def insert_staff(conn: AsyncConnection, *, department_id: int | None, username: str, display_name: str,
                       role: str, password_hash: str | None, email: str | None, phone: str | None,
                       at: datetime) -> int:
    """The new person's id; DuplicateUsername if the name is taken (by anyone, disabled or not)."""
    if await staff_by_username(conn, username) is not None:
        raise DuplicateUsername(username)
    try:
        result = await conn.execute(sa.insert(staff).values(
            department_id=department_id, username=username, display_name=display_name, role=role,
            password_hash=password_hash, email=email, phone=phone, created_at=at,
            password_changed_at=at if password_hash else None,
        ).returning(staff.c.id))
    except IntegrityError:  # taken between the check and the insert: the transaction is rolled back
        raise DuplicateUsername(username) from None
    return int(result.scalar_one())


async def staff_by_id(conn: AsyncConnection, staff_id: int) -> dict[str, Any] | None:
    found = (await conn.execute(sa.select(staff).where(staff.c.id == staff_id))).mappings().first()
    return dict(found) if found else None


async def staff_by_username(conn: AsyncConnection, username: str) -> dict[str, Any] | None:
    found = (await conn.execute(sa.select(staff).where(staff.c.username == username))).mappings().first()
    return dict(found) if found else None


async def staff_of_department(conn: AsyncConnection, department_id: int) -> list[dict[str, Any]]:
    """The department's people, enabled first, then by name."""
    query = (sa.select(staff).where(staff.c.department_id == department_id)
             .order_by(staff.c.disabled_at.is_not(None), staff.c.display_name, staff.c.id))
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def set_password(conn: AsyncConnection, staff_id: int, password_hash: str, at: datetime) -> None:
    await conn.execute(sa.update(staff).where(staff.c.id == staff_id)
                       .values(password_hash=password_hash, password_changed_at=at))


async def disable_staff(conn: AsyncConnection, staff_id: int, at: datetime) -> bool:
    """False if the person was disabled already."""
    result = await conn.execute(sa.update(staff).where(staff.c.id == staff_id, staff.c.disabled_at.is_(None))
                                .values(disabled_at=at))
    return bool(result.rowcount)


# -- sign-in: failures, lock-out, the second factor -------------------------------------------------


async def record_failure(conn: AsyncConnection, staff_id: int, at: datetime, max_failures: int,
                         lockout: timedelta) -> bool:
    """Counts a failed sign-in; the `max_failures`-th in a row locks the account until `at + lockout`
    (and starts the count again). True when this failure locked it."""
    result = await conn.execute(sa.update(staff).where(staff.c.id == staff_id)
                                .values(failed_logins=staff.c.failed_logins + 1).returning(staff.c.failed_logins))
    if int(result.scalar_one()) < max_failures:
        return False
    await conn.execute(sa.update(staff).where(staff.c.id == staff_id)
                       .values(failed_logins=0, locked_until=at + lockout))
    return True


async def record_success(conn: AsyncConnection, staff_id: int, at: datetime) -> None:
    await conn.execute(sa.update(staff).where(staff.c.id == staff_id)
                       .values(failed_logins=0, locked_until=None, last_login_at=at))


async def set_totp(conn: AsyncConnection, staff_id: int, secret: str, step: int) -> None:
    """Enrolment, confirmed by a first code of `step` (which is thereby used)."""
    await conn.execute(sa.update(staff).where(staff.c.id == staff_id)
                       .values(totp_secret=secret, totp_last_step=step))


async def use_totp_step(conn: AsyncConnection, staff_id: int, step: int) -> bool:
    """Marks the code of `step` used; False if it or a later one was used already (a replay)."""
    result = await conn.execute(sa.update(staff).where(
        staff.c.id == staff_id,
        sa.or_(staff.c.totp_last_step.is_(None), staff.c.totp_last_step < step),
    ).values(totp_last_step=step))
    return bool(result.rowcount)


# -- sessions ---------------------------------------------------------------------------------------


async def insert_session(conn: AsyncConnection, *, token_hash: str, staff_id: int, second_factor_due: bool,
                         at: datetime, expires_at: datetime, user_agent: str | None) -> int:
    result = await conn.execute(sa.insert(staff_sessions).values(
        token_hash=token_hash, staff_id=staff_id, second_factor_due=second_factor_due, created_at=at,
        last_seen_at=at, expires_at=expires_at, user_agent=user_agent,
    ).returning(staff_sessions.c.id))
    return int(result.scalar_one())


async def session_and_staff(conn: AsyncConnection, token_hash: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(session, person) for a session's token digest, whatever their state (the caller judges it)."""
    row = (await conn.execute(sa.select(*staff_sessions.c, *staff.c)
                              .join(staff, staff.c.id == staff_sessions.c.staff_id)
                              .where(staff_sessions.c.token_hash == token_hash))).first()
    if row is None:
        return None
    session = {c.name: row._mapping[staff_sessions.c[c.name]] for c in staff_sessions.c}
    person = {c.name: row._mapping[staff.c[c.name]] for c in staff.c}
    return session, person


async def touch_session(conn: AsyncConnection, session_id: int, at: datetime) -> None:
    await conn.execute(sa.update(staff_sessions).where(staff_sessions.c.id == session_id).values(last_seen_at=at))


async def second_factor_done(conn: AsyncConnection, session_id: int, at: datetime) -> None:
    await conn.execute(sa.update(staff_sessions).where(staff_sessions.c.id == session_id)
                       .values(second_factor_due=False, last_seen_at=at))


async def revoke_session(conn: AsyncConnection, session_id: int, staff_id: int, at: datetime) -> bool:
    """Ends one of `staff_id`'s sessions; False if there is no such open session of theirs."""
    result = await conn.execute(sa.update(staff_sessions).where(
        staff_sessions.c.id == session_id, staff_sessions.c.staff_id == staff_id,
        staff_sessions.c.revoked_at.is_(None),
    ).values(revoked_at=at))
    return bool(result.rowcount)


async def revoke_sessions_of(conn: AsyncConnection, staff_id: int, at: datetime, *, keep: int | None = None) -> int:
    """Ends every open session of the person (but `keep`); how many."""
    query = sa.update(staff_sessions).where(staff_sessions.c.staff_id == staff_id, staff_sessions.c.revoked_at.is_(None))
    if keep is not None:
        query = query.where(staff_sessions.c.id != keep)
    return int((await conn.execute(query.values(revoked_at=at))).rowcount or 0)


async def open_sessions_of(conn: AsyncConnection, staff_id: int, at: datetime) -> list[dict[str, Any]]:
    """The person's sessions neither ended nor past their absolute expiry, newest first."""
    query = (sa.select(staff_sessions.c.id, staff_sessions.c.created_at, staff_sessions.c.last_seen_at,
                       staff_sessions.c.expires_at, staff_sessions.c.user_agent, staff_sessions.c.second_factor_due)
             .where(staff_sessions.c.staff_id == staff_id, staff_sessions.c.revoked_at.is_(None),
                    staff_sessions.c.expires_at > at)
             .order_by(staff_sessions.c.id.desc()))
    return [dict(r) for r in (await conn.execute(query)).mappings()]


# -- department settings ----------------------------------------------------------------------------


async def set_department_settings(conn: AsyncConnection, department_id: int, *, require_totp: bool,
                                  keys_publish_without_review: bool) -> None:
    await conn.execute(sa.update(departments).where(departments.c.id == department_id).values(
        require_totp=require_totp, keys_publish_without_review=keys_publish_without_review))

"""Checking who signs in: the password (argon2, the same work and the same answer for an unknown
name as for a wrong password), the lock-out after PUSHSVC_CONSOLE_MAX_FAILURES failures in a row,
and the TOTP code a session still owes. What it finds is a `Verdict`; the page turns it into words
and, when the person passed, `sessions.open_session` into a cookie."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pushsvc.core.clock import now
from pushsvc.services import Services
from pushsvc.staff.passwords import hash_password, needs_rehash, verify_password
from pushsvc.staff.rights import Staff
from pushsvc.staff.sessions import Session, second_factor_passed
from pushsvc.staff.totp import accepted_step
from pushsvc.store import audit
from pushsvc.store.departments import department_by_id
from pushsvc.store.staff import (
    record_failure,
    record_success,
    set_password,
    set_totp,
    staff_by_id,
    staff_by_username,
    use_totp_step,
)

USERNAME_MAX = 64  # staff.username's length
# passed: signed in; code: a TOTP code is due; enrol: the department requires a second factor the
# person has not set up yet; refused: unknown name, wrong password, or disabled (one answer for all).
Outcome = Literal["passed", "code", "enrol", "refused", "locked"]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    staff_id: int | None = None
    locked_until: datetime | None = None


def normalised_username(username: str) -> str:
    return username.strip().casefold()


async def check_password(svc: Services, username: str, password: str, address: str | None) -> Verdict:
    at = now()
    name = normalised_username(username)
    async with svc.db.read() as conn:
        row = await staff_by_username(conn, name) if len(name) <= USERNAME_MAX else None
        department = await department_by_id(conn, row["department_id"]) if row and row["department_id"] else None
    usable = row is not None and row["disabled_at"] is None and row["password_hash"] is not None
    # Always one argon2 verification, for a known name or not: the time says nothing. It takes tens
    # of milliseconds of CPU: in a thread, outside any transaction.
    good = await asyncio.to_thread(verify_password, row["password_hash"] if row is not None and usable else None,
                                   password)
    if row is None or not usable:
        return Verdict("refused")
    if row["locked_until"] is not None and row["locked_until"] > at:
        return Verdict("locked", row["id"], row["locked_until"])
    if not good:
        return await _failed(svc, row, at, address)
    async with svc.db.write() as conn:
        await record_success(conn, row["id"], at)
        if needs_rehash(row["password_hash"]):
            rehashed = await asyncio.to_thread(hash_password, password)
            await set_password(conn, row["id"], rehashed, row["password_changed_at"] or at)
    if row["totp_secret"] is not None:
        return Verdict("code", row["id"])
    if department is not None and department["require_totp"]:
        return Verdict("enrol", row["id"])
    return Verdict("passed", row["id"])


async def _failed(svc: Services, row: dict[str, Any], at: datetime, address: str | None) -> Verdict:
    settings = svc.settings
    lockout = timedelta(minutes=settings.console_lockout_minutes)
    async with svc.db.write() as conn:
        locked = await record_failure(conn, row["id"], at, settings.console_max_failures, lockout)
        if locked:
            await audit.record(conn, Staff.from_row(row).actor, "staff_locked", None, staff_id=row["id"],
                               address=address, until=(at + lockout).isoformat())
    return Verdict("locked", row["id"], at + lockout) if locked else Verdict("refused", row["id"])


async def check_code(svc: Services, session: Session, code: str, address: str | None) -> Verdict:
    """The code a session owes, from the person's authenticator; a wrong one counts as a failed
    sign-in. Passed: the session is a full one."""
    at = now()
    async with svc.db.read() as conn:
        row = await staff_by_id(conn, session.staff.id)
    assert row is not None and row["totp_secret"] is not None
    if row["locked_until"] is not None and row["locked_until"] > at:
        return Verdict("locked", row["id"], row["locked_until"])
    step = accepted_step(row["totp_secret"], code, at, row["totp_last_step"])
    if step is not None:
        async with svc.db.write() as conn:
            used = await use_totp_step(conn, row["id"], step)
            if used:
                await record_success(conn, row["id"], at)
        if used:
            await second_factor_passed(svc, session, address)
            return Verdict("passed", row["id"])
    return await _failed(svc, row, at, address)


async def confirm_enrolment(svc: Services, staff: Staff, secret: str, code: str) -> bool:
    """Sets up the second factor with `secret` once `code` (made from it) proves the person's app
    has it; False for a wrong code."""
    step = accepted_step(secret, code, now(), None)
    if step is None:
        return False
    async with svc.db.write() as conn:
        await set_totp(conn, staff.id, secret, step)
        await audit.record(conn, staff.actor, "staff_totp_enrolled", None, staff_id=staff.id)
    return True

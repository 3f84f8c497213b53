"""Console sessions, kept server side (`staff_sessions`): the cookie carries 256 random bits, the
table their SHA-256, so a copy of the table opens nothing. A session lasts
PUSHSVC_CONSOLE_SESSION_HOURS from sign-in and PUSHSVC_CONSOLE_IDLE_MINUTES from its last request;
it is refused from the next request on once revoked, expired or its person disabled, in every
process (looked up on each request, never cached).

Every way in ends in `open_session`: the password form today, a city's single sign-on callback
later (an SSO account has no password and, its provider having checked the person, owes no code).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.services import Services
from pushsvc.staff.rights import Staff
from pushsvc.store import audit
from pushsvc.store.staff import (
    insert_session,
    revoke_session,
    revoke_sessions_of,
    second_factor_done,
    session_and_staff,
    staff_by_id,
    touch_session,
)

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often: idle time needs no finer
_USER_AGENT_MAX = 200


@dataclass(frozen=True)
class Session:
    id: int
    staff: Staff
    second_factor_due: bool
    totp_enrolled: bool  # whether the person has a second factor (else a due one means enrolling)
    created_at: datetime
    last_seen_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(svc: Services, staff_id: int, *, second_factor_due: bool, user_agent: str | None,
                       address: str | None = None) -> str:
    """A new session for the person: the cookie's value (not stored). Without a second factor due
    the person is signed in from here (and the audit log says so)."""
    token = secrets.token_urlsafe(32)
    at = now()
    async with svc.db.write() as conn:
        session_id = await insert_session(
            conn, token_hash=token_hash(token), staff_id=staff_id, second_factor_due=second_factor_due, at=at,
            expires_at=at + timedelta(hours=svc.settings.console_session_hours),
            user_agent=(user_agent or "")[:_USER_AGENT_MAX] or None,
        )
        if not second_factor_due:
            await _signed_in(conn, staff_id, session_id, address)
    return token


async def _signed_in(conn: AsyncConnection, staff_id: int, session_id: int, address: str | None) -> None:
    row = await staff_by_id(conn, staff_id)  # the actor names the person's department
    assert row is not None
    await audit.record(conn, Staff.from_row(row).actor, "staff_signed_in", None,
                       staff_id=staff_id, session_id=session_id, address=address)


async def session_of(svc: Services, token: str) -> Session | None:
    """The open session `token` names, or None (unknown, revoked, expired, idle too long, the
    person disabled). Notes the request in `last_seen_at` when the last note is a minute old."""
    if not token or len(token) > 100:
        return None
    async with svc.db.read() as conn:
        found = await session_and_staff(conn, token_hash(token))
    if found is None:
        return None
    session, person = found
    at = now()
    idle = timedelta(minutes=svc.settings.console_idle_minutes)
    if (session["revoked_at"] is not None or session["expires_at"] <= at or session["last_seen_at"] + idle <= at
            or person["disabled_at"] is not None):
        return None
    if at - session["last_seen_at"] >= TOUCH_EVERY:
        async with svc.db.write() as conn:
            await touch_session(conn, session["id"], at)
    return Session(id=session["id"], staff=Staff.from_row(person), second_factor_due=session["second_factor_due"],
                   totp_enrolled=person["totp_secret"] is not None, created_at=session["created_at"],
                   last_seen_at=session["last_seen_at"])


async def second_factor_passed(svc: Services, session: Session, address: str | None) -> None:
    """The session's code was right: the person is signed in."""
    async with svc.db.write() as conn:
        await second_factor_done(conn, session.id, now())
        await _signed_in(conn, session.staff.id, session.id, address)


async def sign_out(svc: Services, session: Session) -> None:
    async with svc.db.write() as conn:
        await revoke_session(conn, session.id, session.staff.id, now())
        await audit.record(conn, session.staff.actor, "staff_signed_out", None,
                           staff_id=session.staff.id, session_id=session.id)


async def end_session(svc: Services, actor: str, staff_id: int, session_id: int) -> bool:
    """Ends one session of the person (from their account page, or their admin's); False if it
    was not open or not theirs."""
    async with svc.db.write() as conn:
        ended = await revoke_session(conn, session_id, staff_id, now())
        if ended:
            await audit.record(conn, actor, "staff_session_ended", None, staff_id=staff_id, session_id=session_id)
    return ended


async def end_sessions(svc: Services, actor: str, staff_id: int, *, keep: int | None = None) -> int:
    """Ends every session of the person but `keep`; how many ended."""
    async with svc.db.write() as conn:
        ended = await revoke_sessions_of(conn, staff_id, now(), keep=keep)
        await audit.record(conn, actor, "staff_sessions_ended", None, staff_id=staff_id, sessions=ended)
    return ended

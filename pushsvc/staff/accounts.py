"""Staff accounts: created (by the operator's CLI or admin token, or a department admin for their
own department), disabled (never deleted: the history keeps its names; their sessions end at once),
and a person's own password change. Every change is in the audit log."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from pushsvc.core.identifiers import normalise_email, normalise_phone
from pushsvc.core.msgid import N_
from pushsvc.staff.passwords import generated_password, hash_password, password_problem, verify_password
from pushsvc.staff.rights import Role, Staff
from pushsvc.staff.sign_in import normalised_username
from pushsvc.store import audit
from pushsvc.store.db import Database
from pushsvc.store.departments import department_by_id
from pushsvc.store.staff import (
    DuplicateUsername,
    disable_staff,
    insert_staff,
    revoke_sessions_of,
    set_password,
    staff_by_id,
)

# msgids: the pages show them translated, the API as they are.
BAD_USERNAME = N_("Use 3 to 64 lower-case letters, digits, dots, hyphens or underscores, starting with a letter or digit.")
USERNAME_TAKEN = N_("This username is taken.")
BAD_DISPLAY_NAME = N_("Give a name of 1 to 100 characters.")
BAD_EMAIL = N_("Give a valid e-mail address.")
BAD_PHONE = N_("Give a mainland China mobile number")
OVERSEER_ONLY = N_("A person of no department is an overseer.")
DEPARTMENT_ROLE = N_("Choose drafter, approver or department admin.")
WRONG_PASSWORD = N_("This is not your current password.")
PASSWORDS_DIFFER = N_("The two passwords differ.")
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


class StaffIn(BaseModel):
    """A new person, as the API and the staff page take it."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64, description="3 to 64 lower-case letters, digits, . _ -; stored lower-case")
    display_name: str = Field(max_length=100, description="the person's name as colleagues read it")
    role: Role
    email: str | None = Field(default=None, max_length=254, description="where the person's test sends go")
    phone: str | None = Field(default=None, max_length=32, description="the person's mobile, for test sends")

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        name = normalised_username(v)
        if not (3 <= len(name) <= 64 and set(name) <= _USERNAME_CHARS and name[0].isalnum()):
            raise PydanticCustomError("username", BAD_USERNAME)
        return name

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, v: str) -> str:
        name = v.strip()
        if not (1 <= len(name) <= 100) or any(unicodedata.category(ch) == "Cc" for ch in name):
            raise PydanticCustomError("display_name", BAD_DISPLAY_NAME)
        return name

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return normalise_email(v)
        except ValueError:
            raise PydanticCustomError("email", BAD_EMAIL) from None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return normalise_phone(v)
        except ValueError:
            raise PydanticCustomError("phone", BAD_PHONE) from None


async def create_staff(db: Database, actor: str, department_id: int | None, person: StaffIn,
                       password: str | None = None) -> tuple[int, str]:
    """The new person's id and first password (`password`, or a generated one to hand over once).
    An overseer has no department; everyone else belongs to an existing one."""
    if (person.role == "overseer") != (department_id is None):
        raise ValidationFailed([FieldError("role", DEPARTMENT_ROLE if department_id is not None else OVERSEER_ONLY)])
    password = password if password is not None else generated_password()
    problem = password_problem(password, person.username)
    if problem is not None:
        raise ValidationFailed([problem])
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.write() as conn:
        if department_id is not None and await department_by_id(conn, department_id) is None:
            raise NotFound("no such department")
        try:
            staff_id = await insert_staff(conn, department_id=department_id, username=person.username,
                                          display_name=person.display_name, role=person.role,
                                          password_hash=password_hash, email=person.email, phone=person.phone, at=now())
        except DuplicateUsername:
            raise ValidationFailed([FieldError("username", USERNAME_TAKEN)]) from None
        await audit.record(conn, actor, "staff_created", None, staff_id=staff_id, username=person.username,
                           role=person.role, department=department_id)
    return staff_id, password


async def member(db: Database, admin: Staff, staff_id: int) -> dict[str, Any]:
    """One of the admin's department's people; NotFound for anyone else (another department's,
    an overseer), as if there were no such person."""
    async with db.read() as conn:
        row = await staff_by_id(conn, staff_id)
    if row is None or row["department_id"] is None or row["department_id"] != admin.department_id:
        raise NotFound("no such person in your department")
    return row


async def disable(db: Database, admin: Staff, staff_id: int) -> None:
    """A department admin disables one of their department's people (not themselves, never an
    overseer); the person's sessions end at once."""
    row = await member(db, admin, staff_id)
    if row["id"] == admin.id:
        raise Forbidden("you cannot disable yourself")
    at = now()
    async with db.write() as conn:
        if await disable_staff(conn, staff_id, at):
            ended = await revoke_sessions_of(conn, staff_id, at)
            await audit.record(conn, admin.actor, "staff_disabled", None, staff_id=staff_id, sessions=ended)


async def change_password(db: Database, staff: Staff, current: str, new: str, repeated: str,
                          session_id: int) -> None:
    """The person's own change: the current password first; their other sessions end."""
    async with db.read() as conn:
        row = await staff_by_id(conn, staff.id)
    assert row is not None
    if not await asyncio.to_thread(verify_password, row["password_hash"], current):
        raise ValidationFailed([FieldError("current_password", WRONG_PASSWORD)])
    problem = password_problem(new, staff.username, "new_password")
    if problem is not None:
        raise ValidationFailed([problem])
    if new != repeated:
        raise ValidationFailed([FieldError("repeat_password", PASSWORDS_DIFFER)])
    new_hash = await asyncio.to_thread(hash_password, new)
    at = now()
    async with db.write() as conn:
        await set_password(conn, staff.id, new_hash, at)
        ended = await revoke_sessions_of(conn, staff.id, at, keep=session_id)
        await audit.record(conn, staff.actor, "staff_password_changed", None, staff_id=staff.id, sessions_ended=ended)

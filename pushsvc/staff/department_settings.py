"""What a department admin changes for the department: its console settings (a second factor
required of its people; whether its API keys publish without review) and its API keys (issued,
shown once, revoked), on the same store functions and with the same audit entries as the keys API."""

from __future__ import annotations

from typing import Any

from pushsvc.core.errors import FieldError, NotFound, ValidationFailed
from pushsvc.core.models import KeyIn
from pushsvc.core.msgid import N_
from pushsvc.staff.rights import Staff
from pushsvc.store import audit
from pushsvc.store.db import Database
from pushsvc.store.keys import active_key_named, issue_key, revoke_key
from pushsvc.store.staff import set_department_settings

KEY_NAME_TAKEN = N_("A key with this name is in use: choose another name, or revoke that key first.")


def own_department(admin: Staff) -> int:
    assert admin.department_id is not None, "an overseer has no department to manage"
    return admin.department_id


async def change_settings(db: Database, admin: Staff, *, require_totp: bool, keys_publish_without_review: bool) -> None:
    department_id = own_department(admin)
    async with db.write() as conn:
        await set_department_settings(conn, department_id, require_totp=require_totp,
                                      keys_publish_without_review=keys_publish_without_review)
        await audit.record(conn, admin.actor, "department_settings_changed", None, department=department_id,
                           require_totp=require_totp, keys_publish_without_review=keys_publish_without_review)


async def issue(db: Database, actor: str, department_id: int, key: KeyIn) -> tuple[dict[str, Any], str]:
    """A new key of the department: its listed row and the key itself (shown once). The API and the
    console's settings page both issue through here. Raises ValidationFailed naming `name` when an
    active key has that name."""
    name = key.name.strip()
    async with db.write() as conn:
        if await active_key_named(conn, department_id, name):
            raise ValidationFailed([FieldError("name", KEY_NAME_TAKEN)])
        row, secret = await issue_key(conn, department_id, name, key.kind)
        await audit.record(conn, actor, "key.issue", None, key_id=row["id"], name=name, kind=key.kind,
                           department=department_id)
    return row, secret


async def revoke(db: Database, actor: str, department_id: int, key_id: int) -> None:
    """Refused from the next request on, everywhere. Raises NotFound for a key not the department's."""
    async with db.write() as conn:
        if await revoke_key(conn, department_id, key_id) is None:
            raise NotFound("no such key")
        await audit.record(conn, actor, "key.revoke", None, key_id=key_id, department=department_id)

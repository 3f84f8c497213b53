"""The demo's console people: one of each role for the demo's department and a city overseer,
made with the same account function as `pushsvc staff create`, each with a fresh password the
demo prints once."""

from __future__ import annotations

from dataclasses import dataclass

from pushsvc.staff.accounts import StaffIn, create_staff
from pushsvc.staff.rights import Role
from pushsvc.store import audit
from pushsvc.store.db import Database
from pushsvc.store.staff import set_department_settings

SAMPLE: tuple[tuple[Role, str, str], ...] = (
    ("drafter", "demo-drafter", "陈起草"),
    ("approver", "demo-approver", "李审定"),
    ("department_admin", "demo-admin", "王管理"),
    ("overseer", "demo-overseer", "政务公开办 赵监督"),
)


@dataclass(frozen=True)
class SampleStaff:
    role: Role
    username: str
    password: str


async def make_sample_staff(database_url: str, department_id: int) -> list[SampleStaff]:
    """The people of SAMPLE. The department's own system (the demo's key) keeps publishing without
    review, as it did before the department had an approver; its admin can turn that off."""
    db = Database(database_url)
    made: list[SampleStaff] = []
    try:
        for role, username, name in SAMPLE:
            department = None if role == "overseer" else department_id
            _, password = await create_staff(db, "cli", department, StaffIn(username=username, display_name=name, role=role))
            made.append(SampleStaff(role, username, password))
        async with db.write() as conn:
            await set_department_settings(conn, department_id, require_totp=False, keys_publish_without_review=True)
            await audit.record(conn, "cli", "department_settings_changed", None, department=department_id,
                               require_totp=False, keys_publish_without_review=True)
    finally:
        await db.close()
    return made

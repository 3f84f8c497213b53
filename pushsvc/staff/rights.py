"""Who a signed-in person is and what their role lets them do. No I/O: the console's pages and the
features ask `can` before acting, and the store keeps the person as a row that `Staff` mirrors.

An overseer (the city's open-government office) belongs to no department, reads every one and
changes nothing; everyone else acts only within their own department.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Role = Literal["drafter", "approver", "department_admin", "overseer"]
ROLES: tuple[Role, ...] = get_args(Role)
DEPARTMENT_ROLES: tuple[Role, ...] = ("drafter", "approver", "department_admin")

# The roles that may do each action within their own department (`read` and `read_city` aside).
_ALLOWED: dict[str, frozenset[Role]] = {
    "draft": frozenset({"drafter", "approver", "department_admin"}),
    "approve": frozenset({"approver", "department_admin"}),
    "manage_staff": frozenset({"department_admin"}),
    "manage_settings": frozenset({"department_admin"}),
    "manage_keys": frozenset({"department_admin"}),
    "edit_roster": frozenset({"drafter", "approver", "department_admin"}),
}
ACTIONS: frozenset[str] = frozenset({*_ALLOWED, "read", "read_city"})


@dataclass(frozen=True)
class Staff:
    id: int
    username: str
    display_name: str
    role: Role
    department_id: int | None
    email: str | None
    phone: str | None
    wechat_openid: str | None

    @property
    def actor(self) -> str:
        """Who, in the audit log and on a draft's steps."""
        if self.department_id is None:
            return f"overseer:{self.id}"
        return f"department:{self.department_id}:staff:{self.id}"

    @property
    def is_overseer(self) -> bool:
        return self.role == "overseer"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Staff:
        return cls(id=int(row["id"]), username=row["username"], display_name=row["display_name"],
                   role=row["role"], department_id=row["department_id"], email=row["email"],
                   phone=row["phone"], wechat_openid=row["wechat_openid"])


def can(staff: Staff, action: str, department_id: int | None = None) -> bool:
    """Whether `staff` may do `action` in `department_id` (None: their own department)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if staff.is_overseer:
        return action in ("read", "read_city")
    if action == "read_city":
        return False
    if department_id is not None and department_id != staff.department_id:
        return False
    return action == "read" or staff.role in _ALLOWED[action]

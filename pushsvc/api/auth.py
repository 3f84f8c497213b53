"""Who is calling: the admin (PUSHSVC_ADMIN_TOKEN) or a department (its API key)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pushsvc.api.problems import Problem
from pushsvc.api.routing import Auth, services
from pushsvc.store.departments import department_by_key

CALLER = "caller"


@dataclass(frozen=True)
class Caller:
    department: dict[str, Any] | None  # None for the admin

    @property
    def is_admin(self) -> bool:
        return self.department is None

    @property
    def department_id(self) -> int | None:
        return None if self.department is None else int(self.department["id"])

    @property
    def source(self) -> str:
        return "api:admin" if self.is_admin else f"api:department:{self.department_id}"


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def authenticate(request: web.Request, auth: Auth) -> Caller | None:
    if auth == "none":
        return None
    token = _bearer(request)
    svc = services(request)
    if auth in ("admin", "department_or_admin") and hmac.compare_digest(token, svc.settings.admin_token):
        return Caller(department=None)
    if auth in ("department", "department_or_admin"):
        async with svc.db.read() as conn:
            department = await department_by_key(conn, token)
        if department is not None:
            return Caller(department=department)
    raise Problem(401, "the key is not valid for this endpoint", headers={"WWW-Authenticate": "Bearer"})


def caller(request: web.Request) -> Caller:
    return request[CALLER]

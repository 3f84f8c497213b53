"""Who is calling: the admin (PUSHSVC_ADMIN_TOKEN) or a department (its API key)."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pushsvc.http.limits import within_key_limit
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Auth, services
from pushsvc.services import Services
from pushsvc.store.departments import department_by_key, hash_key

CALLER = web.RequestKey("caller", "Caller | None")


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
        await within_key_limit(svc, "admin", svc.settings.admin_requests_per_minute)
        return Caller(department=None)
    if auth in ("department", "department_or_admin"):
        department = await _department(svc, token)
        if department is not None:
            await within_key_limit(svc, f"department:{department['id']}", svc.settings.api_requests_per_minute)
            return Caller(department=department)
    raise Problem(401, "the key is not valid for this endpoint", headers={"WWW-Authenticate": "Bearer"})


# Departments by key, for a few seconds: every department request needs one, and a key or its
# domains change rarely (a change is seen within KEY_CACHE_SECONDS).
KEY_CACHE_SECONDS = 5.0
_known: dict[str, tuple[float, dict[str, Any]]] = {}


async def _department(svc: Services, token: str) -> dict[str, Any] | None:
    digest = hash_key(token)
    cached = _known.get(digest)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with svc.db.read() as conn:
        department = await department_by_key(conn, token)
    if department is not None:
        if len(_known) > 10_000:
            _known.clear()
        _known[digest] = (time.monotonic() + KEY_CACHE_SECONDS, department)
    return department


def caller(request: web.Request) -> Caller:
    return request[CALLER]

"""Who is calling: the admin (PUSHSVC_ADMIN_TOKEN) or a department (its API key)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pushsvc.core.clock import now
from pushsvc.http.limits import within_key_limit
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Auth, services
from pushsvc.services import Services
from pushsvc.store.audit import ADMIN, department_actor
from pushsvc.store.keys import department_by_key, due_for_touch, touch

CALLER = web.RequestKey("caller", "Caller | None")


@dataclass(frozen=True)
class Caller:
    department: dict[str, Any] | None  # None for the admin
    key_id: int | None = None  # the department's key this request came with
    key_kind: str = "live"  # live | test: what a test key publishes is simulated (pushsvc.delivery.simulator)

    @property
    def test(self) -> bool:
        return self.key_kind == "test"

    @property
    def is_admin(self) -> bool:
        return self.department is None

    @property
    def department_id(self) -> int | None:
        return None if self.department is None else int(self.department["id"])

    @property
    def source(self) -> str:
        return "api:admin" if self.is_admin else f"api:department:{self.department_id}"

    @property
    def actor(self) -> str:
        """Who, in the audit log: `admin` or `department:<id>:key:<key id>`."""
        if self.department_id is None:
            return ADMIN
        return department_actor(self.department_id, self.key_id)


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("send 'Authorization: Bearer <key>'")
    # Keys and the admin token are ASCII; anything else is no credential of ours (and would make
    # hmac.compare_digest raise on str).
    if not token.isascii():
        raise _unauthenticated("the key is not valid")
    return token


async def authenticate(request: web.Request, auth: Auth) -> Caller | None:
    """The caller, or 401 for a missing, malformed, unknown or revoked credential and 403 for a
    valid one this endpoint is not for (a department key on an admin endpoint, or the reverse)."""
    if auth == "none":
        return None
    token = _bearer(request)
    svc = services(request)
    if hmac.compare_digest(token.encode(), svc.settings.admin_token.encode()):
        if auth == "department":
            raise Problem(403, "this endpoint is for department keys; the admin token has no department")
        await within_key_limit(svc, "admin", svc.settings.admin_requests_per_minute)
        return Caller(department=None)
    found = await _department(svc, token)
    if found is None:
        raise _unauthenticated("the key is not valid")
    department, key_id, key_kind = found
    if auth == "admin":
        raise Problem(403, "this endpoint is for the admin; a department key may not use it")
    await within_key_limit(svc, f"department:{department['id']}", svc.settings.api_requests_per_minute)
    return Caller(department=department, key_id=key_id, key_kind=key_kind)


async def _department(svc: Services, token: str) -> tuple[dict[str, Any], int, str] | None:
    """(department, key id, key kind) for a key that is not revoked. Looked up on every request, never
    cached: a revoked key is refused by every process from the next request on, for the price of
    one indexed read (one row by a unique digest)."""
    async with svc.db.read() as conn:
        found = await department_by_key(conn, token)
    if found is None:
        return None
    department, key = found
    at = now()
    if due_for_touch(key["last_used_at"], at):
        async with svc.db.write() as conn:
            await touch(conn, key["id"], at)
    return department, int(key["id"]), str(key["kind"])


def caller(request: web.Request) -> Caller:
    return request[CALLER]

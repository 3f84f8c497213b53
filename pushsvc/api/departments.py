"""Departments: created by the admin, each with a first key; their named API keys issued (each
shown once), listed and revoked by the admin or the department itself."""

from __future__ import annotations

from aiohttp import web

from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.models import (
    DepartmentIn,
    DepartmentOut,
    KeyIn,
    KeyInfo,
    KeyList,
    KeyOut,
    UrgentRightIn,
    UrgentRightOut,
)
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem, invalid
from pushsvc.http.routing import endpoint, json_body, json_response, parse_model, path_id, services
from pushsvc.staff.department_settings import issue, revoke
from pushsvc.store import audit
from pushsvc.store.departments import DuplicateDepartment, create_department, department_by_id
from pushsvc.store.keys import list_keys
from pushsvc.store.urgent import may_send_urgent, set_may_send_urgent


@endpoint("POST", "/v1/departments", summary="Create a department and issue its API key", tag="departments",
          auth="admin", body=DepartmentIn, response=DepartmentOut, status=201, errors=(400, 401, 403, 409, 422))
async def post_department(request: web.Request) -> web.Response:
    data = parse_model(DepartmentIn, await json_body(request))
    svc = services(request)
    errors = [
        FieldError(f"domains[{i}]", f"unknown policy domain '{d}'")
        for i, d in enumerate(data.domains)
        if d not in svc.catalogue.domains
    ]
    if errors:
        raise invalid(errors)
    domains = list(dict.fromkeys(data.domains))
    try:
        async with svc.db.write() as conn:
            dept_id, key = await create_department(conn, data.name.strip(), domains, data.contact_email)
    except DuplicateDepartment:
        raise Problem(409, f"a department named '{data.name}' exists", [FieldError("name", "already taken")]) from None
    return json_response(DepartmentOut(id=dept_id, name=data.name.strip(), domains=domains, api_key=key), status=201)


def _own_department(request: web.Request) -> int:
    """The department of the path, if the caller may manage its keys: the admin any, a department
    key its own (until the console's roles say which of a department's people may)."""
    department_id = path_id(request)
    who = caller(request)
    if not who.is_admin and who.department_id != department_id:
        raise Problem(403, "a department key manages its own department's keys only")
    return department_id


async def _existing(request: web.Request, department_id: int) -> None:
    async with services(request).db.read() as conn:
        if await department_by_id(conn, department_id) is None:
            raise Problem(404, "no such department")


@endpoint("POST", "/v1/departments/{id}/keys", summary="Issue another named API key (shown once)", tag="departments",
          auth="department_or_admin", body=KeyIn, response=KeyOut, status=201, errors=(400, 401, 403, 404, 409, 422))
async def post_key(request: web.Request) -> web.Response:
    department_id = _own_department(request)
    data = parse_model(KeyIn, await json_body(request))
    await _existing(request, department_id)
    try:
        row, key = await issue(services(request).db, caller(request).actor, department_id, data)
    except ValidationFailed as exc:
        raise Problem(409, f"a key named '{data.name.strip()}' is in use", exc.errors) from None
    return json_response(KeyOut(id=row["id"], name=row["name"], kind=row["kind"], api_key=key), status=201)


@endpoint("GET", "/v1/departments/{id}/keys", summary="The department's API keys (never the keys themselves)",
          tag="departments", auth="department_or_admin", response=KeyList, errors=(401, 403, 404))
async def get_keys(request: web.Request) -> web.Response:
    department_id = _own_department(request)
    await _existing(request, department_id)
    async with services(request).db.read() as conn:
        rows = await list_keys(conn, department_id)
    return json_response(KeyList(items=[KeyInfo(**r) for r in rows]))


@endpoint("DELETE", "/v1/departments/{id}/keys/{key_id}", summary="Revoke a key: refused from the next request on",
          tag="departments", auth="department_or_admin", status=204, errors=(401, 403, 404))
async def delete_key(request: web.Request) -> web.Response:
    department_id = _own_department(request)
    await revoke(services(request).db, caller(request).actor, department_id, path_id(request, "key_id"))
    return web.Response(status=204)


@endpoint("PUT", "/v1/departments/{id}/urgent", summary='Grant or withdraw the right to publish "priority": "urgent"',
          tag="departments", auth="admin", body=UrgentRightIn, response=UrgentRightOut, errors=(400, 401, 403, 404, 422))
async def put_urgent_right(request: web.Request) -> web.Response:
    department_id = path_id(request)
    data = parse_model(UrgentRightIn, await json_body(request))
    async with services(request).db.write() as conn:
        if not await set_may_send_urgent(conn, department_id, data.may_send_urgent):
            raise Problem(404, "no such department")
        await audit.record(conn, caller(request).actor, "department.urgent", None, department=department_id,
                           may_send_urgent=data.may_send_urgent)
    return json_response(UrgentRightOut(department_id=department_id, may_send_urgent=data.may_send_urgent))


@endpoint("GET", "/v1/departments/{id}/urgent", summary="Whether the department may publish urgent policies",
          tag="departments", auth="department_or_admin", response=UrgentRightOut, errors=(401, 403, 404))
async def get_urgent_right(request: web.Request) -> web.Response:
    department_id = _own_department(request)
    async with services(request).db.read() as conn:
        allowed = await may_send_urgent(conn, department_id)
    if allowed is None:
        raise Problem(404, "no such department")
    return json_response(UrgentRightOut(department_id=department_id, may_send_urgent=allowed))

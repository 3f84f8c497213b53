"""Departments: created by the admin, each with a key shown once."""

from __future__ import annotations

from aiohttp import web

from pushsvc.core.errors import FieldError
from pushsvc.core.models import DepartmentIn, DepartmentOut
from pushsvc.http.problems import Problem, invalid
from pushsvc.http.routing import endpoint, json_body, json_response, parse_model, services
from pushsvc.store.departments import DuplicateDepartment, create_department


@endpoint("POST", "/v1/departments", summary="Create a department and issue its API key", tag="departments",
          auth="admin", body=DepartmentIn, response=DepartmentOut, status=201, errors=(400, 401, 409, 422))
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

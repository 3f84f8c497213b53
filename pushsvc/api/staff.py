"""The operator's admin token bootstraps the console: the first accounts of a department (its
admin, who then adds the rest in /console/staff) and the city's overseers. Each answer carries a
first password, shown this once."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from pushsvc.http.auth import caller
from pushsvc.http.routing import endpoint, json_body, json_response, parse_model, path_id, services
from pushsvc.staff.accounts import StaffIn, create_staff


class StaffCreated(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    department_id: int | None
    password: str = Field(description="The first password, shown this once; the person changes it in /console/account.")


async def _create(request: web.Request, department_id: int | None) -> web.Response:
    person = parse_model(StaffIn, await json_body(request))
    staff_id, password = await create_staff(services(request).db, caller(request).actor, department_id, person)
    return json_response(StaffCreated(id=staff_id, username=person.username, display_name=person.display_name,
                                      role=person.role, department_id=department_id, password=password), status=201)


@endpoint("POST", "/v1/departments/{id}/staff", summary="Create a console account in a department (admin token)",
          tag="staff", auth="admin", body=StaffIn, response=StaffCreated, status=201, errors=(400, 401, 403, 404, 422))
async def post_department_staff(request: web.Request) -> web.Response:
    return await _create(request, path_id(request))


@endpoint("POST", "/v1/staff", summary="Create an overseer's console account (admin token)", tag="staff",
          auth="admin", body=StaffIn, response=StaffCreated, status=201, errors=(400, 401, 403, 422))
async def post_overseer(request: web.Request) -> web.Response:
    return await _create(request, None)

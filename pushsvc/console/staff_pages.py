"""`/console/staff` (department admins): the department's people, adding one (a first password
shown once), ending someone's sessions, disabling someone (their sessions end at once). Only
people of the admin's own department, never an overseer; anyone else answers as not found."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from pushsvc.console.session import (
    FORM_MEDIA,
    checked_form,
    console_endpoint,
    console_page,
    page_lang,
    redirect,
    require,
)
from pushsvc.core.clock import now
from pushsvc.core.errors import NotFound, Refused, ValidationFailed
from pushsvc.core.models import pydantic_errors
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.http.routing import services
from pushsvc.i18n import words
from pushsvc.staff.accounts import StaffIn, create_staff, disable, member
from pushsvc.staff.rights import DEPARTMENT_ROLES, Staff
from pushsvc.staff.sessions import end_sessions
from pushsvc.store.staff import staff_of_department

CREATE_FORM, PERSON_FORM = "staff-create", "staff-person"
DONE = {"disabled": N_("The account was disabled and its sessions ended."),
        "ended": N_("Their sessions were ended.")}
_FIELDS = ("username", "display_name", "role", "email", "phone")


async def _page(request: web.Request, admin: Staff, *, status: int = 200, errors: dict[str, str] | None = None,
                typed: dict[str, str] | None = None, created: dict[str, Any] | None = None,
                done: str | None = None) -> web.Response:
    async with services(request).db.read() as conn:
        people = await staff_of_department(conn, admin.department_id or 0)
    return console_page(request, "staff.html", admin, status=status, form=CREATE_FORM, people=people,
                        roles=DEPARTMENT_ROLES, errors=errors or {}, typed=typed or {}, created=created, done=done,
                        at=now(), local_time=local_time)


@console_endpoint("GET", "/console/staff", summary="The department's people (department admins)")
async def staff_page(request: web.Request) -> web.Response:
    admin = await require(request, "manage_staff")
    done = DONE.get(request.query.get("done", ""))
    return await _page(request, admin, done=words(page_lang(request)).gettext(done) if done else None)


@console_endpoint("POST", "/console/staff", summary="Add a person to the department: their first password shown once",
                  body_media=FORM_MEDIA, errors=(403, 413, 422))
async def staff_create(request: web.Request) -> web.Response:
    admin = await require(request, "manage_staff")
    fields = await checked_form(request, CREATE_FORM)
    typed = {name: fields.get(name, "") for name in _FIELDS}
    said = words(page_lang(request))
    try:
        person = StaffIn(**typed)
        staff_id, password = await create_staff(services(request).db, admin.actor, admin.department_id, person)
    except ValidationError as exc:
        errors = {e.field: said.gettext(e.message) for e in pydantic_errors(exc)}
        return await _page(request, admin, status=422, errors=errors, typed=typed)
    except ValidationFailed as exc:
        errors = {e.field: said.gettext(e.message) for e in exc.errors}
        return await _page(request, admin, status=422, errors=errors, typed=typed)
    return await _page(request, admin, created={"id": staff_id, "username": person.username, "password": password,
                                                "display_name": person.display_name})


def _person_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise NotFound("no such person")
    return int(raw)


async def _refused(request: web.Request, admin: Staff, exc: Refused) -> web.Response:
    said = words(page_lang(request))
    status = 404 if isinstance(exc, NotFound) else 403
    text = said.gettext("There is no such person in your department.") if status == 404 else \
        said.gettext("You cannot disable your own account.")
    return console_page(request, "message.html", admin, status=status, title=said.gettext("Not possible"), text=text,
                        back="/console/staff")


@console_endpoint("POST", "/console/staff/{id}/disable", summary="Disable a person of the department: their "
                  "sessions end at once", status=303, body_media=FORM_MEDIA, errors=(403, 404, 413))
async def staff_disable(request: web.Request) -> web.Response:
    admin = await require(request, "manage_staff")
    await checked_form(request, PERSON_FORM)
    try:
        await disable(services(request).db, admin, _person_id(request))
    except Refused as exc:
        return await _refused(request, admin, exc)
    raise redirect("/console/staff?done=disabled")


@console_endpoint("POST", "/console/staff/{id}/sessions/end", summary="End every session of a person of the department",
                  status=303, body_media=FORM_MEDIA, errors=(403, 404, 413))
async def staff_end_sessions(request: web.Request) -> web.Response:
    admin = await require(request, "manage_staff")
    await checked_form(request, PERSON_FORM)
    svc = services(request)
    try:
        person = await member(svc.db, admin, _person_id(request))
    except Refused as exc:
        return await _refused(request, admin, exc)
    await end_sessions(svc, admin.actor, person["id"])
    raise redirect("/console/staff?done=ended")

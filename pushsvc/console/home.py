"""`/console`: the sign-in form for a visitor; for a signed-in person their home (the pages their
role opens), for an overseer the city view."""

from __future__ import annotations

from aiohttp import web

from pushsvc.console.session import console_endpoint, console_page, current_session, redirect
from pushsvc.staff.rights import can


@console_endpoint("GET", "/console", summary="The console: the person's home, or the sign-in form when signed out")
async def console_home(request: web.Request) -> web.Response:
    session = await current_session(request)
    if session is None:
        raise redirect("/console/login")
    if session.second_factor_due:
        raise redirect("/console/totp")
    staff = session.staff
    if can(staff, "read_city"):
        raise redirect("/console/figures/city")
    return console_page(request, "home.html", staff, can_draft=can(staff, "draft"), can_approve=can(staff, "approve"),
                        can_manage=can(staff, "manage_staff"))

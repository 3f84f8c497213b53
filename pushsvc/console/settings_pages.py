"""`/console/settings` (department admins): the department's console settings and its API keys."""

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
from pushsvc.core.errors import NotFound, ValidationFailed
from pushsvc.core.models import KeyIn
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.http.routing import services
from pushsvc.i18n import words
from pushsvc.staff.department_settings import change_settings, issue, own_department, revoke
from pushsvc.staff.rights import Staff
from pushsvc.store.departments import department_by_id
from pushsvc.store.keys import KINDS, list_keys

SETTINGS_FORM, KEY_FORM, REVOKE_FORM = "settings", "key-issue", "key-revoke"
DONE = {"saved": N_("The settings were saved."), "revoked": N_("The key was revoked: it is refused from now on.")}
BAD_KEY_NAME = N_("Give the key a name of 1 to 100 characters, such as 'case system'.")


async def _page(request: web.Request, admin: Staff, *, status: int = 200, errors: dict[str, str] | None = None,
                typed: dict[str, str] | None = None, issued: dict[str, Any] | None = None,
                done: str | None = None) -> web.Response:
    async with services(request).db.read() as conn:
        department = await department_by_id(conn, admin.department_id or 0)
        keys = await list_keys(conn, admin.department_id or 0)
    assert department is not None
    return console_page(request, "settings.html", admin, status=status, form=SETTINGS_FORM, department=department,
                        keys=keys, kinds=KINDS, errors=errors or {}, typed=typed or {}, issued=issued, done=done,
                        local_time=local_time)


@console_endpoint("GET", "/console/settings", summary="The department's settings and API keys (department admins)")
async def settings_page(request: web.Request) -> web.Response:
    admin = await require(request, "manage_settings")
    done = DONE.get(request.query.get("done", ""))
    return await _page(request, admin, done=words(page_lang(request)).gettext(done) if done else None)


@console_endpoint("POST", "/console/settings", summary="Save the department's console settings", status=303,
                  body_media=FORM_MEDIA, errors=(403, 413))
async def settings_save(request: web.Request) -> web.Response:
    admin = await require(request, "manage_settings")
    fields = await checked_form(request, SETTINGS_FORM)
    await change_settings(services(request).db, admin, require_totp=fields.get("require_totp") == "on",
                          keys_publish_without_review=fields.get("keys_publish_without_review") == "on")
    raise redirect("/console/settings?done=saved")


@console_endpoint("POST", "/console/settings/keys", summary="Issue an API key for the department (shown once)",
                  body_media=FORM_MEDIA, errors=(403, 413, 422))
async def settings_issue_key(request: web.Request) -> web.Response:
    admin = await require(request, "manage_keys")
    fields = await checked_form(request, KEY_FORM)
    typed = {"name": fields.get("name", ""), "kind": fields.get("kind", "live")}
    said = words(page_lang(request))
    try:
        row, key = await issue(services(request).db, admin.actor, own_department(admin), KeyIn(name=typed["name"], kind=typed["kind"]))  # type: ignore[arg-type]
    except ValidationError as exc:
        wrong = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        errors = {f: said.gettext(BAD_KEY_NAME) if f == "name" else said.gettext("Choose live or test.") for f in wrong}
        return await _page(request, admin, status=422, errors=errors, typed=typed)
    except ValidationFailed as exc:
        return await _page(request, admin, status=422, errors={e.field: said.gettext(e.message) for e in exc.errors},
                           typed=typed)
    return await _page(request, admin, issued={"name": row["name"], "kind": row["kind"], "key": key})


@console_endpoint("POST", "/console/settings/keys/{id}/revoke", summary="Revoke one of the department's API keys",
                  status=303, body_media=FORM_MEDIA, errors=(403, 404, 413))
async def settings_revoke_key(request: web.Request) -> web.Response:
    admin = await require(request, "manage_keys")
    await checked_form(request, REVOKE_FORM)
    raw = request.match_info["id"]
    said = words(page_lang(request))
    try:
        if not raw.isdigit():
            raise NotFound("no such key")
        await revoke(services(request).db, admin.actor, own_department(admin), int(raw))
    except NotFound:
        return console_page(request, "message.html", admin, status=404, title=said.gettext("Not possible"),
                            text=said.gettext("Your department has no such key."), back="/console/settings")
    raise redirect("/console/settings?done=revoked")

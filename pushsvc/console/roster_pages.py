"""`/console/roster`: the department's subscribers searched (contacts masked in the list), one read
(audited), corrected (the rules of PATCH /v1/subscribers/{id}), erased after a confirmation, and a
CSV import run as a job with its progress, summary and rejected rows. Drafters, approvers and
admins of the department change its records; an overseer reads every department's; another
department's record is not found. The features are `pushsvc.subscriptions.roster` and
`import_jobs`; this module only turns forms into their calls and their answers into pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.console.session import (
    CSRF_FIELD,
    EXPIRED,
    console_endpoint,
    console_page,
    form_token_valid,
    page_lang,
    read_form_multi,
    redirect,
    require,
)
from pushsvc.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pushsvc.core.identifiers import mask_email, mask_phone
from pushsvc.core.models import Locale
from pushsvc.core.msgid import N_
from pushsvc.core.subscribers import csv_row_to_subscriber
from pushsvc.http.routing import file_response, json_response, services
from pushsvc.i18n import words
from pushsvc.staff.rights import Staff, can
from pushsvc.subscriptions import import_jobs, roster

PAGE_SIZE = 50
FREQUENCIES = ("immediate", "daily", "weekly")
LOCALES: tuple[Locale, ...] = ("zh-CN", "zh-HK", "en")
CHANNELS = ("email", "sms", "wechat")
# The body keys a console form always sends: left empty, they clear the value (the form shows them all).
_CLEARABLE = ("name", "email", "phone", "wechat", "quiet_hours", "external_id")
# An error's field (as the API names it) -> the form's field it is shown beside.
_FORM_FIELD = {"wechat.webhook_url": "wechat_webhook", "wechat.openid": "wechat_openid", "wechat": "wechat_openid"}


def viewer(staff: Staff) -> roster.Viewer:
    return roster.Viewer(department_id=staff.department_id, actor=staff.actor, source=f"console:{staff.actor}",
                         everyone=staff.is_overseer)


def _not_found(request: web.Request, staff: Staff) -> web.Response:
    said = words(page_lang(request))
    return console_page(request, "message.html", staff, status=404, title=said.gettext("Not found"),
                        text=said.gettext("There is no such record in your department's roster."), back="/console/roster")


def _record_id(request: web.Request) -> int | None:
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**63 else None


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def listed(row: dict[str, Any]) -> dict[str, Any]:
    """A record as the list shows it: contacts masked as every log line masks them."""
    return {"id": row["id"], "name": row["name"], "email": mask_email(row["email"]) if row["email"] else "",
            "phone": mask_phone(row["phone"]) if row["phone"] else "", "uscc": row["uscc"] or "",
            "status": row["status"], "external_id": row["external_id"] or "", "audiences": sorted(row["audiences"]),
            "channels": row["channels"], "department_id": row["department_id"]}


# -- the list ---------------------------------------------------------------------------------------


@console_endpoint("GET", "/console/roster", summary="The department's subscribers, searched and paged")
async def roster_list(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    svc = services(request)
    filters = {name: request.query.get(name, "").strip() for name in ("q", "audience", "status")}
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        after = 0
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        rows = await roster.search(svc, viewer(staff), q=filters["q"], audience=filters["audience"] or None,
                                   status=filters["status"] or None, after_id=max(after, 0), limit=PAGE_SIZE + 1)
    except ValidationFailed as exc:
        errors = {e.field: e.message for e in exc.errors}
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    next_href = f"/console/roster?{urlencode({**filters, 'after': rows[-1]['id']})}" if more else None
    return console_page(
        request, "roster.html", staff, filters=filters, errors=errors, rows=[listed(r) for r in rows],
        next_href=next_href, groups=svc.catalogue.groups, statuses=roster.STATUSES,
        can_edit=can(staff, "edit_roster"), notice=request.query.get("done", ""),
    )


# -- the CSV import (registered before /console/roster/{id}, which would take "import" for an id) ----


@console_endpoint("GET", "/console/roster/import", summary="Upload a CSV of subscribers to import")
async def import_form(request: web.Request) -> web.Response:
    staff = await require(request, "edit_roster")
    return console_page(request, "import.html", staff, form="roster-import", state=None, error="")


@console_endpoint("POST", "/console/roster/import", summary="Start importing an uploaded CSV (multipart form)")
async def import_upload(request: web.Request) -> web.Response:
    staff = await require(request, "edit_roster")
    svc = services(request)
    said = words(page_lang(request))
    fields: dict[str, str] = {}
    data: bytearray | None = None
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "file":  # type: ignore[union-attr]
                data = bytearray()
                # Read a slice at a time: a file past the limit is refused, not held whole in memory.
                while (chunk := await part.read_chunk()) and len(data) <= svc.settings.max_import_bytes:  # type: ignore[union-attr]
                    data += chunk
            elif part.name:  # type: ignore[union-attr]
                fields[part.name] = await part.text()  # type: ignore[union-attr]
    if not form_token_valid(request, "roster-import", fields):
        return console_page(request, "import.html", staff, status=403, form="roster-import", state=None,
                            error=said.gettext(EXPIRED))
    text, error = _upload_text(data, svc.settings.max_import_bytes)
    if text is None:
        return console_page(request, "import.html", staff, status=422, form="roster-import", state=None,
                            error=said.gettext(error))
    import_id = await import_jobs.start(svc, text, department_id=staff.department_id, actor=staff.actor,
                                        source=f"console:{staff.actor}")
    raise redirect(f"/console/roster/import/{import_id}")


def _upload_text(data: bytearray | None, limit: int) -> tuple[str | None, str]:
    """The uploaded file as text, or None and what is wrong with it (a msgid)."""
    if not data:
        return None, N_("Choose a CSV file to import.")
    if len(data) > limit:
        return None, N_("The file is larger than this service accepts.")
    try:
        return bytes(data).decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        return None, N_("The file must be UTF-8 encoded CSV (in a spreadsheet: save it as “CSV UTF-8”).")


async def _import_state(request: web.Request, staff: Staff) -> import_jobs.ImportState | None:
    return await import_jobs.state(services(request), request.match_info["import_id"], staff.department_id)


@console_endpoint("GET", "/console/roster/import/{import_id}", summary="An import's progress, then its summary")
async def import_page(request: web.Request) -> web.Response:
    staff = await require(request, "edit_roster")
    state = await _import_state(request, staff)
    if state is None:
        return _not_found(request, staff)
    return console_page(request, "import.html", staff, form="roster-import", state=state, error="")


@console_endpoint("GET", "/console/roster/import/{import_id}/progress", summary="An import's progress as JSON (import.js)")
async def import_progress(request: web.Request) -> web.Response:
    staff = await require(request, "edit_roster")
    state = await _import_state(request, staff)
    if state is None:
        raise web.HTTPNotFound()
    return json_response(state.as_dict(), headers={"Cache-Control": "no-store"})


@console_endpoint("GET", "/console/roster/import/{import_id}/rejected",
                  summary="An import's rejected rows, downloaded as CSV (text/csv; pages answer a refusal in HTML)")
async def import_rejected(request: web.Request) -> web.Response:
    staff = await require(request, "edit_roster")
    text = await import_jobs.rejected_csv(services(request), request.match_info["import_id"], staff.department_id)
    if text is None:
        return _not_found(request, staff)
    response = file_response(("\ufeff" + text).encode(), "rejected-rows.csv", "text/csv")
    response.headers["Cache-Control"] = "no-store"
    return response


# -- one record -------------------------------------------------------------------------------------


@console_endpoint("GET", "/console/roster/{id}", summary="One subscriber of the department (the reading is audited)")
async def subscriber_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    sid = _record_id(request)
    try:
        row = await roster.read(services(request), viewer(staff), sid or 0)
    except NotFound:
        return _not_found(request, staff)
    return console_page(request, "subscriber.html", staff, mode="view", row=row,
                        can_edit=can(staff, "edit_roster") and row["department_id"] == staff.department_id,
                        notice=request.query.get("done", ""), **_form_context(request))


def _form_values(row: dict[str, Any]) -> tuple[dict[str, str], set[str], set[str]]:
    """A stored record as the edit form's fields, its domains and its channels."""
    body = roster.stored_body(row)
    values = {key: _cell(body[key]) for key in ("name", "email", "phone", "external_id", "frequency", "locale")}
    wechat = body["wechat"] or {}
    values |= {"wechat_openid": _cell(wechat.get("openid")), "wechat_webhook": _cell(wechat.get("webhook_url"))}
    quiet = body["quiet_hours"]
    values["quiet_hours"] = f"{quiet['start']}-{quiet['end']}" if quiet else ""
    for group, attrs in body["audiences"].items():
        values[f"{group}.member"] = "1"
        values |= {f"{group}.{name}": _cell(value) for name, value in attrs.items()}
    return values, set(body["domains"]), set(body["channels"])


def _posted(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], set[str], set[str], dict[str, Any]]:
    """The edit form as posted: its fields (kept to show again), domains, channels, and the record it
    asks for in the API's shape. A group's attributes count only when its box is ticked."""
    values = {k: v for k, v in pairs if k not in (CSRF_FIELD, "domain", "channel")}
    domains = {v for k, v in pairs if k == "domain"}
    channels = {v for k, v in pairs if k == "channel"}
    members = {k.split(".", 1)[0] for k, v in values.items() if k.endswith(".member") and v}
    row = {k: v for k, v in values.items() if "." not in k or (k.split(".", 1)[0] in members and not k.endswith(".member"))}
    body = csv_row_to_subscriber({**row, "domains": ";".join(sorted(domains)), "channels": ";".join(sorted(channels))})
    for group in members:
        body["audiences"].setdefault(group, {})
    return values, domains, channels, {**{key: None for key in _CLEARABLE}, **body}


def _form_field(path: str) -> str:
    """Where an error about `path` (as the API names fields) is shown on the form."""
    if path in _FORM_FIELD:
        return _FORM_FIELD[path]
    head, _, rest = path.partition(".")
    if head == "audiences" and rest:
        return rest if "." in rest else f"{rest}.member"
    return path.split("[", 1)[0].split(".", 1)[0]


def _form_context(request: web.Request) -> dict[str, Any]:
    catalogue = services(request).catalogue
    return {"groups": catalogue.groups, "domains": catalogue.domains, "frequencies": FREQUENCIES, "locales": LOCALES,
            "channels": CHANNELS}


async def _editable(request: web.Request) -> tuple[Staff, int | None, dict[str, Any] | None]:
    """The person (who may edit the roster) and the record they may change, or None."""
    staff = await require(request, "edit_roster")
    sid = _record_id(request)
    try:
        row = await roster.read(services(request), viewer(staff), sid or 0)
    except NotFound:
        row = None
    return staff, sid, row


@console_endpoint("GET", "/console/roster/{id}/edit", summary="The form correcting one subscriber")
async def edit_form(request: web.Request) -> web.Response:
    staff, sid, row = await _editable(request)
    if row is None:
        return _not_found(request, staff)
    values, domains, channels = _form_values(row)
    return console_page(request, "subscriber.html", staff, form=f"roster-edit-{sid}", mode="edit", row=row,
                        values=values, chosen_domains=domains, chosen_channels=channels, errors={}, general=[],
                        **_form_context(request))


@console_endpoint("POST", "/console/roster/{id}/edit", summary="Correct one subscriber (the rules of PATCH)")
async def edit_post(request: web.Request) -> web.Response:
    staff, sid, row = await _editable(request)
    if row is None or sid is None:
        return _not_found(request, staff)
    pairs = await read_form_multi(request)
    values, domains, channels, body = _posted(pairs)
    said = words(page_lang(request))
    problems: list[FieldError] = []
    if not form_token_valid(request, f"roster-edit-{sid}", dict(pairs)):
        problems = [FieldError("", said.gettext(EXPIRED))]
    else:
        try:
            await roster.update(services(request), viewer(staff), sid, body)
        except NotFound:
            return _not_found(request, staff)
        except (ValidationFailed, Conflict) as exc:
            problems = exc.errors or [FieldError("", exc.detail if isinstance(exc, Conflict) else str(exc))]
        else:
            raise redirect(f"/console/roster/{sid}?done=saved")
    errors: dict[str, str] = {}
    general: list[str] = []
    for problem in problems:
        name = _form_field(problem.field) if problem.field else ""
        if name and (name in values or name in ("domains", "channels") or name.endswith(".member")):
            errors[name] = f"{errors[name]}; {problem.message}" if name in errors else problem.message
        else:
            general.append(f"{problem.field}: {problem.message}" if problem.field else problem.message)
    return console_page(request, "subscriber.html", staff, status=422, form=f"roster-edit-{sid}", mode="edit", row=row,
                        values=values, chosen_domains=domains, chosen_channels=channels, errors=errors,
                        general=general, **_form_context(request))


@console_endpoint("GET", "/console/roster/{id}/delete", summary="Confirm erasing one subscriber")
async def delete_form(request: web.Request) -> web.Response:
    staff, sid, row = await _editable(request)
    if row is None:
        return _not_found(request, staff)
    return console_page(request, "subscriber.html", staff, form=f"roster-delete-{sid}", mode="delete", row=row,
                        error="", **_form_context(request))


@console_endpoint("POST", "/console/roster/{id}/delete", summary="Erase one subscriber (PIPL)")
async def delete_post(request: web.Request) -> web.Response:
    staff, sid, row = await _editable(request)
    if row is None or sid is None:
        return _not_found(request, staff)
    pairs = await read_form_multi(request)
    if not form_token_valid(request, f"roster-delete-{sid}", dict(pairs)):
        said = words(page_lang(request))
        return console_page(request, "subscriber.html", staff, status=403, form=f"roster-delete-{sid}", mode="delete",
                            row=row, error=said.gettext(EXPIRED), **_form_context(request))
    try:
        await roster.erase(services(request), viewer(staff), sid)
    except NotFound:
        return _not_found(request, staff)
    raise redirect("/console/roster?done=erased")

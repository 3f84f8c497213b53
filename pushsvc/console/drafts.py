"""The console's drafts: the list, the compose form (a new policy, a revision or a repeal of a
published one), saving as typed, the reach and each channel's rendering, the test send, and
submitting for review.

Saving never refuses an incomplete draft: the page shows the draft as stored with every error the
API would give beside its field, the reach once it checks, and the renderings. Add and remove a
targeting row are submit buttons (the page needs no script); `targeting.js` adds rows in place and
refreshes the reach from `POST /console/drafts/{id}/reach` as the clerk types.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.console.compose_form import compose_view, reach_labels
from pushsvc.console.session import (
    FORM_MEDIA,
    PageAnswer,
    checked_form,
    console_endpoint,
    console_page,
    form_token,
    page_lang,
    redirect,
    require,
)
from pushsvc.core.errors import Conflict, FieldError, Forbidden, NotFound, Refused, ValidationFailed
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, json_response, path_id, services
from pushsvc.i18n import words
from pushsvc.policies import drafts
from pushsvc.policies.draft_form import body_of, fields_of, new_body, placed
from pushsvc.policies.preview import preview
from pushsvc.policies.renderings import LOCALES, Rendering, draft_message, render_all
from pushsvc.policies.review import WITHDRAWABLE, submit, withdraw
from pushsvc.policies.test_send import TooSoon, request_test_send
from pushsvc.policies.validation import Publisher
from pushsvc.policies.view import own_policy
from pushsvc.services import Services
from pushsvc.staff.rights import Staff, can
from pushsvc.store.drafts import events
from pushsvc.store.staff import staff_of_department

KINDS = drafts.KINDS
STATUS_FILTER = Param("status", "only drafts in this status", schema={"type": "string", "enum": list(drafts.STATUSES)})
# What the page says after a test send (`?sent=`), msgids.
SENT_NOTES = {
    "yes": N_("The test is on its way to your own e-mail, phone and WeChat (those in your account)."),
    "later": N_("You have sent enough tests for this hour: please try again later."),
    "nowhere": N_("Your account has no e-mail, phone or WeChat to send a test to: add one under Account."),
    "invalid": N_("The draft cannot be sent yet: correct the marked fields first."),
}
REFUSAL_TITLES = {NotFound: (N_("Not found"), 404), Conflict: (N_("Not possible now"), 409),
                  Forbidden: (N_("Not allowed"), 403)}


def draft_form(draft_id: int) -> str:
    """The CSRF form name of a draft's compose form (and its reach requests)."""
    return f"draft-{draft_id}"


def refusal_page(request: web.Request, staff: Staff, exc: Refused) -> web.Response:
    said = words(page_lang(request))
    title, status = REFUSAL_TITLES[type(exc)]
    return console_page(request, "message.html", staff, status=status, title=said.gettext(title), text=exc.detail)


async def readable_draft(request: web.Request, staff: Staff) -> dict[str, Any]:
    """The draft of the path if the person may read it (their department's; an overseer any)."""
    try:
        return await drafts.own_draft(services(request), None if staff.is_overseer else staff.department_id,
                                      path_id(request))
    except (Problem, NotFound) as exc:  # a malformed id, or another department's draft: the same page
        raise PageAnswer(refusal_page(request, staff, NotFound("no such draft"))) from exc


async def publisher_of(svc: Services, department_id: int) -> Publisher:
    return await drafts.department_publisher(svc, department_id)


async def checked(svc: Services, publisher: Publisher, draft: dict[str, Any], advanced: bool
                  ) -> tuple[dict[str, str], list[Rendering], Any]:
    """(errors by form field, renderings, reach) of the draft as stored; reach only for a new policy."""
    try:
        message, channels = await draft_message(svc, publisher, draft)
    except ValidationFailed as exc:
        return placed(exc.errors, advanced), [], None
    except Refused as exc:
        return placed(exc.errors or [FieldError("", exc.detail)], advanced), [], None
    reach = await preview(svc, publisher, draft["body"]) if draft["kind"] == "new" else None
    return {}, render_all(svc, message, channels), reach


async def history(svc: Services, draft: dict[str, Any]) -> list[dict[str, Any]]:
    """The draft's steps with the names of the people who took them."""
    async with svc.db.read() as conn:
        steps = await events(conn, draft["id"])
        people = {f"department:{p['department_id']}:staff:{p['id']}": p["display_name"]
                  for p in await staff_of_department(conn, draft["department_id"])}
    return [dict(e, who=people.get(e["actor"], e["actor"]), at_local=local_time(e["at"])) for e in steps]


def rendering_view(draft_id: int, r: Rendering) -> dict[str, Any]:
    """A rendering as the page shows it: the e-mail's subject and a frame of its HTML, the SMS
    text with its size, the WeChat template fields and robot markdown."""
    shown: dict[str, Any] = {"channel": r.channel, "locale": r.locale, "error": r.error}
    if r.error:
        return shown
    if r.channel == "email":
        shown |= {"subject": r.shown["subject"], "frame": f"/console/drafts/{draft_id}/email?locale={r.locale}"}
    elif r.channel == "sms":
        shown |= {"text": r.shown["text"], "chars": r.shown["chars"], "parts": r.shown["parts"]}
    elif r.channel == "wechat":
        data = r.shown.get("template", {}).get("data", {})
        markdown = r.shown.get("webhook", {}).get("markdown", {}).get("content", "")
        shown |= {"fields": [(k, v.get("value", "") if isinstance(v, dict) else v) for k, v in data.items()],
                  "markdown": markdown}
    return shown


async def draft_page(request: web.Request, staff: Staff, draft: dict[str, Any], *, status: int = 200,
                     typed: dict[str, Any] | None = None, note: str | None = None) -> web.Response:
    """The compose page of a draft (editable by its department's drafters while draft or
    returned), or the draft as it stands; `typed`: a body not stored (a refused save) to show."""
    svc = services(request)
    lang = page_lang(request)
    said = words(lang)
    publisher = await publisher_of(svc, draft["department_id"])
    policy = await own_policy(svc, draft["department_id"], draft["policy_id"]) if draft["policy_id"] and \
        draft["kind"] != "new" else None
    shown = fields_of(draft["kind"], typed if typed is not None else draft["body"], policy)
    errors, renderings, reach = await checked(svc, publisher, draft if typed is None else dict(draft, body=typed),
                                              bool(shown.get("where_json")))
    editable = draft["status"] in drafts.EDITABLE and can(staff, "draft", draft["department_id"])
    blank = int(request.query["rows"]) if request.query.get("rows", "").isdigit() else 0
    sent = request.query.get("sent", "")
    context = compose_view(shown, svc.catalogue, list(publisher.domains or ()), lang, said, errors, blank) \
        if draft["kind"] == "new" else {"v": shown, "errors": errors}
    steps = await history(svc, draft)
    returned = [e for e in steps if e["action"] == "returned"]
    return console_page(
        request, "draft.html", staff, status=status, form=draft_form(draft["id"]), draft=draft, kind=draft["kind"],
        policy=policy, editable=editable,
        renderings=[rendering_view(draft["id"], r) for r in renderings], reach=reach, steps=steps,
        last_return=returned[-1] if returned and draft["status"] == "returned" else None,
        note=note or (said.gettext(SENT_NOTES[sent]) if sent in SENT_NOTES else None),
        may_review=draft["status"] == "submitted" and can(staff, "approve", draft["department_id"]),
        may_withdraw=draft["status"] in WITHDRAWABLE and can(staff, "draft", draft["department_id"]),
        locales=LOCALES, blank_rows=len([r for r in context.get("rows", []) if not r["attr"]]),
        labels=reach_labels(svc.catalogue, lang, said),
        test_csrf=form_token(request, f"test-{draft['id']}"), **context,
    )


# -- the list and a new draft --------------------------------------------------------------------


@console_endpoint("GET", "/console/drafts", summary="The department's drafts, the latest first", query=(STATUS_FILTER,))
async def drafts_list(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    assert staff.department_id is not None
    wanted = request.query.get("status", "")
    statuses = (wanted,) if wanted in drafts.STATUSES else ()
    items = await drafts.department_drafts(services(request), staff.department_id, statuses)
    return console_page(request, "drafts.html", staff, items=[dict(d, updated_local=local_time(d["updated_at"]),
                                                                   title=_title(d)) for d in items],
                        statuses=drafts.STATUSES, wanted=wanted)


def _title(draft: dict[str, Any]) -> str:
    body = draft["body"] if isinstance(draft["body"], dict) else {}
    return str(body.get("title") or body.get("reason") or "")


async def _policy_for(request: web.Request, staff: Staff, kind: str, raw: str) -> dict[str, Any] | None:
    if kind == "new":
        return None
    try:
        return await own_policy(services(request), staff.department_id, int(raw))
    except (ValueError, NotFound) as exc:
        raise PageAnswer(refusal_page(request, staff, NotFound("no such policy"))) from exc


@console_endpoint("GET", "/console/drafts/new", summary="The compose form: a new policy, or a revision or "
                  "repeal of a published one (?kind=revise|repeal&policy=<id>)",
                  query=(Param("kind", "new (default), revise or repeal"),
                         Param("policy", "the policy revised or repealed")))
async def new_draft_form(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    kind = request.query.get("kind", "new")
    kind = kind if kind in KINDS else "new"
    policy = await _policy_for(request, staff, kind, request.query.get("policy", ""))
    svc, lang = services(request), page_lang(request)
    publisher = await publisher_of(svc, staff.department_id or 0)
    shown = fields_of(kind, {}, policy)
    context = compose_view(shown, svc.catalogue, list(publisher.domains or ()), lang, words(lang), {}) \
        if kind == "new" else {"v": shown, "errors": {}}
    return console_page(request, "draft.html", staff, form="draft-new", draft=None, kind=kind, policy=policy,
                        editable=True, renderings=[], reach=None, steps=[], last_return=None, note=None,
                        may_review=False, may_withdraw=False, locales=LOCALES, blank_rows=1, test_csrf="", labels={},
                        **context)


@console_endpoint("POST", "/console/drafts/new", summary="Save a new draft as typed", status=303,
                  body_media=FORM_MEDIA, errors=(403, 404, 413))
async def create_draft(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    assert staff.department_id is not None
    fields = await checked_form(request, "draft-new")
    kind = fields.get("kind") if fields.get("kind") in KINDS else "new"
    policy = await _policy_for(request, staff, kind, fields.get("policy_id", ""))
    fields = _without_removed(fields)
    try:
        draft_id = await drafts.create(services(request), staff.department_id, staff.actor, kind,
                                       body_of(kind, fields, policy), policy["id"] if policy else None)
    except Refused as exc:
        return refusal_page(request, staff, exc)
    raise redirect(_after_save(draft_id, fields))


def _without_removed(fields: dict[str, str]) -> dict[str, str]:
    """The fields without the targeting row whose remove button was pressed (`action=remove.<n>`)."""
    action = fields.get("action", "")
    if not action.startswith("remove."):
        return fields
    prefix = f"clause.{action.removeprefix('remove.')}."
    return {k: v for k, v in fields.items() if not k.startswith(prefix)}


def _after_save(draft_id: int, fields: dict[str, str]) -> str:
    """The draft's page; with one more blank targeting row after "add a condition"."""
    if fields.get("action") == "add_clause":
        blank = int(fields["blank_rows"]) if fields.get("blank_rows", "").isdigit() else 0
        return f"/console/drafts/{draft_id}?{urlencode({'rows': blank + 1})}#targeting"
    return f"/console/drafts/{draft_id}"


# -- one draft -----------------------------------------------------------------------------------


@console_endpoint("GET", "/console/drafts/{id}", summary="A draft: the compose form (or the draft as it stands), "
                  "its errors, reach, renderings and history", errors=(404,))
async def draft_view(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    draft = await readable_draft(request, staff)
    return await draft_page(request, staff, draft)


@console_endpoint("POST", "/console/drafts/{id}", summary="Save a draft as typed (version names what was edited); "
                  "action=submit also submits it for review", status=303, body_media=FORM_MEDIA,
                  errors=(403, 404, 409, 413))
async def save_draft(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    draft = await readable_draft(request, staff)
    fields = _without_removed(await checked_form(request, draft_form(draft["id"])))
    svc = services(request)
    policy = await own_policy(svc, draft["department_id"], draft["policy_id"]) if draft["kind"] != "new" else None
    body = body_of(draft["kind"], fields, policy)
    version = int(fields["version"]) if fields.get("version", "").isdigit() else 0
    said = words(page_lang(request))
    try:
        version = await drafts.save(svc, draft["department_id"], draft["id"], staff.actor, body, version)
    except Conflict as exc:  # changed meanwhile, or no longer editable: what was typed is shown, not lost
        return await draft_page(request, staff, await readable_draft(request, staff), status=409, typed=body,
                                note=said.gettext("Not saved: %(why)s", why=exc.detail))
    if fields.get("action") == "submit":
        try:
            await submit(svc, await publisher_of(svc, draft["department_id"]), draft["id"], staff.actor, version)
        except (ValidationFailed, Refused):
            return await draft_page(request, staff, await readable_draft(request, staff), status=422,
                                    note=said.gettext("Saved, but not submitted: correct the marked fields first."))
    raise redirect(_after_save(draft["id"], fields))


@console_endpoint("POST", "/console/drafts/{id}/reach", summary="The reach of the compose form as typed (JSON; "
                  "nothing saved): total, by channel, by audience, or the errors by form field",
                  body_media=FORM_MEDIA, errors=(403, 404, 413))
async def draft_reach(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    draft = await readable_draft(request, staff)
    fields = await checked_form(request, draft_form(draft["id"]))
    svc = services(request)
    body = new_body(fields)
    try:
        reach = await preview(svc, await publisher_of(svc, draft["department_id"]), body)
    except (ValidationFailed, Refused) as exc:
        errors = exc.errors if isinstance(exc, ValidationFailed) else (exc.errors or [])
        return json_response({"errors": placed(errors, bool(fields.get("where_json", "").strip()))}, status=422)
    return json_response(reach)


@console_endpoint("GET", "/console/drafts/{id}/email", summary="A draft's e-mail as the recipient sees it, for "
                  "the compose page's sandboxed frame", query=(Param("locale", "zh-CN, zh-HK or en"),), errors=(404,))
async def draft_email(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    draft = await readable_draft(request, staff)
    svc = services(request)
    locale = request.query.get("locale") if request.query.get("locale") in LOCALES else LOCALES[0]
    try:
        message, _ = await draft_message(svc, await publisher_of(svc, draft["department_id"]), draft)
        shown = svc.channels["email"].preview(message, locale)
        html = shown["html"]
        for image in shown["inline_images"]:  # the frame fetches nothing: its QR code comes inline
            html = html.replace(f"cid:{image['content_id']}", f"data:{image['content_type']};base64,{image['data']}")
    except (ValidationFailed, Refused, KeyError):
        html = "<!doctype html><p>—</p>"
    # Shown in a frame of the compose page: a unique origin with no script, no form, nothing fetched.
    return web.Response(text=html, content_type="text/html", headers={
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'self'",
        "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store"})


@console_endpoint("POST", "/console/drafts/{id}/test-send", summary="Send the draft to oneself, marked as a test",
                  status=303, body_media=FORM_MEDIA, errors=(403, 404, 413))
async def draft_test_send(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    draft = await readable_draft(request, staff)
    await checked_form(request, f"test-{draft['id']}")
    outcome = "yes"
    if not (staff.email or staff.phone or staff.wechat_openid):
        outcome = "nowhere"
    else:
        try:
            await request_test_send(services(request), draft["department_id"], draft["id"], staff.actor, staff.id,
                                    page_lang(request))
        except TooSoon:
            outcome = "later"
        except (ValidationFailed, Refused):
            outcome = "invalid"
    raise redirect(f"/console/drafts/{draft['id']}?{urlencode({'sent': outcome})}")


@console_endpoint("POST", "/console/drafts/{id}/withdraw", summary="Give a draft up (until it is approved); it "
                  "stays, with its history", status=303, body_media=FORM_MEDIA, errors=(403, 404, 409, 413))
async def withdraw_draft(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    draft = await readable_draft(request, staff)
    await checked_form(request, draft_form(draft["id"]))
    try:
        await withdraw(services(request), draft["department_id"], draft["id"], staff.actor)
    except Refused as exc:
        return refusal_page(request, staff, exc)
    raise redirect(f"/console/drafts/{draft['id']}")

"""`/console/account`: a person's own account: who they are, their password (the current one
first; their other sessions end), their second factor (set up by scanning a QR code and giving a
first code), and their open sessions, any of which they can end."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.console.session import (
    FORM_MEDIA,
    checked_form,
    console_endpoint,
    console_page,
    current_session,
    page_lang,
    redirect,
    require,
)
from pushsvc.console.sign_in import enrolled_secret, enrolment
from pushsvc.core.clock import now
from pushsvc.core.errors import ValidationFailed
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.http.routing import services
from pushsvc.i18n import words
from pushsvc.staff.accounts import change_password
from pushsvc.staff.rights import Staff
from pushsvc.staff.sessions import Session, end_session, end_sessions
from pushsvc.staff.sign_in import confirm_enrolment
from pushsvc.store.departments import department_by_id
from pushsvc.store.staff import open_sessions_of, staff_by_id

PASSWORD_FORM, TOTP_FORM, SESSIONS_FORM = "account-password", "account-totp", "account-sessions"
# What the page says after a change (the redirect's ?done=).
DONE = {"password": N_("Your password was changed; your other sessions were ended."),
        "totp": N_("Your authenticator is set up: each sign-in will ask for its code."),
        "ended": N_("The session was ended.")}


async def _session(request: web.Request) -> tuple[Staff, Session]:
    staff = await require(request, "read")
    session = await current_session(request)
    assert session is not None
    return staff, session


async def _page(request: web.Request, staff: Staff, session: Session, *, status: int = 200,
                errors: dict[str, str] | None = None, done: str | None = None, secret: str | None = None) -> web.Response:
    svc = services(request)
    async with svc.db.read() as conn:
        row = await staff_by_id(conn, staff.id)
        department = await department_by_id(conn, staff.department_id) if staff.department_id else None
        sessions = await open_sessions_of(conn, staff.id, now())
    assert row is not None
    return console_page(
        request, "account.html", staff, status=status, form=PASSWORD_FORM, errors=errors or {}, done=done,
        department=department, enrolled=row["totp_secret"] is not None,
        setup=None if row["totp_secret"] else enrolment(svc, staff, secret),
        sessions=sessions, this_session=session.id, local_time=local_time,
        password_changed_at=row["password_changed_at"], last_login_at=row["last_login_at"],
    )


@console_endpoint("GET", "/console/account", summary="The person's own account: password, second factor, sessions")
async def account_page(request: web.Request) -> web.Response:
    staff, session = await _session(request)
    done = DONE.get(request.query.get("done", ""))
    return await _page(request, staff, session, done=words(page_lang(request)).gettext(done) if done else None)


def _translated(exc: ValidationFailed, lang: str) -> dict[str, str]:
    said = words(lang)
    return {e.field: said.gettext(e.message) for e in exc.errors}


@console_endpoint("POST", "/console/account/password", summary="Change one's own password (the current one first)",
                  status=303, body_media=FORM_MEDIA, errors=(403, 413, 422))
async def account_password(request: web.Request) -> web.Response:
    staff, session = await _session(request)
    fields = await checked_form(request, PASSWORD_FORM)
    try:
        await change_password(services(request).db, staff, fields.get("current_password", ""),
                              fields.get("new_password", ""), fields.get("repeat_password", ""), session.id)
    except ValidationFailed as exc:
        return await _page(request, staff, session, status=422, errors=_translated(exc, page_lang(request)))
    raise redirect("/console/account?done=password")


@console_endpoint("POST", "/console/account/totp", summary="Set up one's authenticator: the key shown, confirmed by a code",
                  status=303, body_media=FORM_MEDIA, errors=(403, 413, 422))
async def account_totp(request: web.Request) -> web.Response:
    staff, session = await _session(request)
    fields = await checked_form(request, TOTP_FORM)
    if session.totp_enrolled:  # replacing a second factor is not done by whoever holds a session
        raise redirect("/console/account")
    svc, said = services(request), words(page_lang(request))
    secret = enrolled_secret(svc, staff, fields.get("enrol_token", ""))
    if secret is None:
        return await _page(request, staff, session, status=422,
                           errors={"code": said.gettext("The set-up had expired: scan the new code.")})
    if not await confirm_enrolment(svc, staff, secret, fields.get("code", "")):
        return await _page(request, staff, session, status=422, secret=secret, errors={
            "code": said.gettext("That code is not right: check the app and the phone's clock, then try the next code.")})
    raise redirect("/console/account?done=totp")


@console_endpoint("POST", "/console/account/sessions", summary="End one of one's sessions, or all the others",
                  status=303, body_media=FORM_MEDIA, errors=(403, 404, 413))
async def account_sessions(request: web.Request) -> web.Response:
    staff, session = await _session(request)
    fields = await checked_form(request, SESSIONS_FORM)
    svc = services(request)
    target: Any = fields.get("session", "")
    if target == "others":
        await end_sessions(svc, staff.actor, staff.id, keep=session.id)
    elif target.isdigit():
        await end_session(svc, staff.actor, staff.id, int(target))
    raise redirect("/console/account?done=ended")

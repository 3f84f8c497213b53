"""Signing in to the console and out: the password form, the second factor's form (a code, or
setting up an authenticator when the department requires one and the person has none), and the
sign-out form. After the password the session exists but owes its code (`second_factor_due`) and
opens nothing else; `next` brings the person back to the page that sent them here."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.console.session import (
    FORM_MEDIA,
    address,
    checked_form,
    clear_session_cookie,
    console_endpoint,
    console_page,
    current_session,
    current_staff,
    form_token_valid,
    page_lang,
    read_form,
    redirect,
    set_session_cookie,
)
from pushsvc.core.qr import qr_png
from pushsvc.core.quiet_hours import local_time
from pushsvc.core.tokens import BadToken
from pushsvc.http.routing import Param, services
from pushsvc.i18n import words
from pushsvc.services import Services
from pushsvc.staff.rights import Staff
from pushsvc.staff.sessions import Session, open_session, second_factor_passed, sign_out
from pushsvc.staff.sign_in import Verdict, check_code, check_password, confirm_enrolment
from pushsvc.staff.totp import new_secret, provisioning_uri

LOGIN_FORM, CODE_FORM, SIGN_OUT_FORM = "sign-in", "second-factor", "sign-out"
ENROL_PURPOSE = "totp-enrol"
ENROL_TTL = timedelta(minutes=30)
NEXT = Param("next", "the console page to go to after signing in")


def safe_next(raw: str | None) -> str:
    """Only a console path of this site: never another host (`//evil`, `/\\evil`)."""
    if raw and raw.startswith("/console") and not raw.startswith(("//", "/\\")) and "\\" not in raw:
        return raw
    return "/console"


# -- the password -----------------------------------------------------------------------------------


def _login_page(request: web.Request, status: int, *, username: str = "", next_path: str = "/console",
                error: str | None = None) -> web.Response:
    return console_page(request, "login.html", None, status=status, form=LOGIN_FORM, username=username,
                        next=next_path, error=error)


@console_endpoint("GET", "/console/login", summary="The console's sign-in form", query=(NEXT,))
async def console_login_form(request: web.Request) -> web.Response:
    next_path = safe_next(request.query.get("next"))
    if await current_staff(request) is not None:
        raise redirect(next_path)
    return _login_page(request, 200, next_path=next_path)


@console_endpoint("POST", "/console/login", summary="Sign in with username and password: a session, then the "
                  "second factor if one is due", status=303, body_media=FORM_MEDIA, errors=(401, 403, 413, 429))
async def console_login(request: web.Request) -> web.Response:
    fields = await read_form(request)
    said = words(page_lang(request))
    username, next_path = fields.get("username", "").strip(), safe_next(fields.get("next"))
    if not form_token_valid(request, LOGIN_FORM, fields):
        return _login_page(request, 403, username=username, next_path=next_path,
                           error=said.gettext("This form had expired: please sign in again."))
    svc = services(request)
    verdict = await check_password(svc, username, fields.get("password", ""), address(request))
    if verdict.outcome in ("refused", "locked"):
        return _login_page(request, 401 if verdict.outcome == "refused" else 429, username=username,
                           next_path=next_path, error=refusal(verdict, said.locale))
    assert verdict.staff_id is not None
    due = verdict.outcome != "passed"
    token = await open_session(svc, verdict.staff_id, second_factor_due=due,
                               user_agent=request.headers.get("User-Agent"), address=address(request))
    target = f"/console/totp?{urlencode({'next': next_path})}" if due else next_path
    response = web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})
    set_session_cookie(request, response, token)
    return response


def refusal(verdict: Verdict, lang: str) -> str:
    said = words(lang)
    if verdict.outcome == "locked" and verdict.locked_until is not None:
        return said.gettext("Too many failed attempts: this account is locked until %(time)s. Try again then, "
                            "or ask your department's admin.", time=local_time(verdict.locked_until)[-5:])
    if verdict.outcome == "locked":
        return said.gettext("Too many failed attempts: this account is locked for now.")
    return said.gettext("The username or password is not right.")


# -- the second factor ------------------------------------------------------------------------------


def enrolment(svc: Services, staff: Staff, secret: str | None = None) -> dict[str, Any]:
    """What the set-up form shows: a new secret (or the one being confirmed) as text and as a QR
    code, and the signed field that carries it back with the first code."""
    secret = secret or new_secret()
    uri = provisioning_uri(secret, staff.username)
    return {
        "secret": secret,
        "secret_groups": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
        "qr": "data:image/png;base64," + base64.b64encode(qr_png(uri)).decode(),
        "enrol_token": svc.signer.sign(ENROL_PURPOSE, {"s": secret, "u": staff.id}, ttl=ENROL_TTL),
    }


def enrolled_secret(svc: Services, staff: Staff, token: str) -> str | None:
    """The secret the set-up form carried, if the token is ours, fresh and for this person."""
    try:
        payload = svc.signer.verify(ENROL_PURPOSE, token)
    except BadToken:
        return None
    secret = payload.get("s")
    return secret if payload.get("u") == staff.id and isinstance(secret, str) else None


async def _due_session(request: web.Request) -> Session:
    session = await current_session(request)
    if session is None:
        raise redirect("/console/login")
    return session


def _code_page(request: web.Request, session: Session, status: int = 200, error: str | None = None,
               secret: str | None = None) -> web.Response:
    next_path = safe_next(request.query.get("next"))
    setup = None if session.totp_enrolled else enrolment(services(request), session.staff, secret)
    return console_page(request, "totp.html", None, status=status, form=CODE_FORM, person=session.staff,
                        next=next_path, error=error, setup=setup)


@console_endpoint("GET", "/console/totp", summary="The second factor: a code, or setting one up when required",
                  query=(NEXT,))
async def console_code_form(request: web.Request) -> web.Response:
    session = await _due_session(request)
    if not session.second_factor_due:
        raise redirect(safe_next(request.query.get("next")))
    return _code_page(request, session)


@console_endpoint("POST", "/console/totp", summary="Give the second factor's code; signed in when right",
                  status=303, body_media=FORM_MEDIA, errors=(401, 403, 413, 429), query=(NEXT,))
async def console_code(request: web.Request) -> web.Response:
    session = await _due_session(request)
    fields = await checked_form(request, CODE_FORM)
    next_path = safe_next(fields.get("next") or request.query.get("next"))
    if not session.second_factor_due:
        raise redirect(next_path)
    svc, said = services(request), words(page_lang(request))
    if not session.totp_enrolled:
        secret = enrolled_secret(svc, session.staff, fields.get("enrol_token", ""))
        if secret is None:
            return _code_page(request, session, 403, said.gettext("The set-up had expired: scan the new code."))
        if not await confirm_enrolment(svc, session.staff, secret, fields.get("code", "")):
            return _code_page(request, session, 401, said.gettext("That code is not right: check the app and "
                                                                   "the phone's clock, then try the next code."), secret)
        await second_factor_passed(svc, session, address(request))
        raise redirect(next_path)
    verdict = await check_code(svc, session, fields.get("code", ""), address(request))
    if verdict.outcome == "passed":
        raise redirect(next_path)
    error = refusal(verdict, said.locale) if verdict.outcome == "locked" else said.gettext(
        "That code is not right, or was used already: wait for the next one.")
    return _code_page(request, session, 429 if verdict.outcome == "locked" else 401, error)


# -- signing out ------------------------------------------------------------------------------------


@console_endpoint("POST", "/console/logout", summary="Sign out: the session ends at once, everywhere",
                  status=303, body_media=FORM_MEDIA, errors=(403, 413))
async def console_logout(request: web.Request) -> web.Response:
    await checked_form(request, SIGN_OUT_FORM)
    session = await current_session(request)
    if session is not None:
        await sign_out(services(request), session)
    response = web.Response(status=303, headers={"Location": "/console/login", "Cache-Control": "no-store"})
    clear_session_cookie(response)
    return response


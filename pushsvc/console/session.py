"""What every console page shares: who is signed in (`current_staff`, `require`), rendering a page
in the console's layout (`console_page`), CSRF for its forms (`form_token`, `checked_form`), and
`console_endpoint`, which registers a page so that `require`'s 403 and a refused form are answered
as pages.

The session cookie (`pushsvc_console`: HttpOnly, SameSite=Strict, Secure over https, path
/console) names a server-side session (`pushsvc.staff.sessions`). A form's CSRF token is signed
with the service's secret and names the form and a digest of that cookie, so it is good only in the
session it was shown in and dies with it; the sign-in form, shown before any session, is bound the
same way to a random cookie of its own. A browser that says a post came from another site
(Sec-Fetch-Site) is refused whatever it carries. (The public pages' `pushsvc.web.csrf` works the
same way with a site-wide cookie; the layers keep the console from importing it, and a token bound
to the session is the stronger choice here.)
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.core.msgid import N_
from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.http.forms import CSRF_TTL, LOCALES, csrf_genuine, csrf_token, form_pairs, language_links
from pushsvc.http.forms import FORM_MEDIA as FORM_MEDIA
from pushsvc.http.forms import LANG as LANG
from pushsvc.http.limits import client_address
from pushsvc.http.pages import SECURITY_HEADERS, environment
from pushsvc.http.routing import Handler, endpoint, services
from pushsvc.i18n import words
from pushsvc.staff.rights import Staff, can
from pushsvc.staff.sessions import Session, session_of

COOKIE = "pushsvc_console"
LANG_COOKIE = "pushsvc_console_lang"
PRE_COOKIE = "pushsvc_console_pre"  # binds the sign-in form's token before there is a session
CSRF_FIELD = "csrf_token"
PATH = "/console"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The console runs its own scripts (served from /console/static) and may fetch from itself (the
# reach preview, live progress); nothing else changes from the public pages' policy. A rendered
# e-mail is shown in a sandboxed frame of ours.
HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    **NO_STORE,
}
EXPIRED = N_("This form had expired or came from elsewhere: please check it and send it again.")
_CSRF_PURPOSE = "console-csrf"
_FORM_BYTES = 256 * 1024  # a policy draft's body with every locale and a long text
_FORM_FIELDS = 2000
_SESSION = web.RequestKey("console_session", "Session | None")
_FRESH_PRE = web.RequestKey("console_pre_cookie", str)

# The navigation: (path, label msgid, the action that shows it).
NAV: tuple[tuple[str, str, str], ...] = (
    ("/console/policies", N_("Policies"), "read"),
    ("/console/drafts", N_("Drafts"), "draft"),
    ("/console/review", N_("Review"), "approve"),
    ("/console/roster", N_("Roster"), "read"),
    ("/console/figures", N_("Figures"), "read"),
    ("/console/questions", N_("Questions"), "read"),
    ("/console/audit", N_("Audit"), "read"),
    ("/console/staff", N_("Staff"), "manage_staff"),
    ("/console/settings", N_("Settings"), "manage_settings"),
    ("/console/account", N_("Account"), "read"),
)
ROLE_NAMES = {"drafter": N_("Drafter"), "approver": N_("Approver"), "department_admin": N_("Department admin"),
              "overseer": N_("Overseer")}


class PageAnswer(web.HTTPForbidden):
    """A page to answer with at once, raised from deep in a handler (a 403 from `require`, a
    refused form): `console_endpoint` answers with `response`. (An HTTPException so that a handler
    registered without it still answers 4xx, as problem+json.)"""

    def __init__(self, response: web.Response) -> None:
        super().__init__()
        self.response = response


def console_endpoint(method: str, path: str, *, summary: str, **options: Any) -> Callable[[Handler], Handler]:
    """`pushsvc.http.routing.endpoint` for a console page (tag "console", HTML)."""
    def register(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except PageAnswer as page:
                return page.response

        options.setdefault("tag", "console")
        return endpoint(method, path, summary=summary, html=True, **options)(answer)

    return register


# -- who is signed in -------------------------------------------------------------------------------


async def current_session(request: web.Request) -> Session | None:
    """The request's open session, full or still owing its second factor (looked up once a request)."""
    if _SESSION not in request:
        request[_SESSION] = await session_of(services(request), request.cookies.get(COOKIE, ""))
    return request[_SESSION]


async def current_staff(request: web.Request) -> Staff | None:
    """The signed-in person: a full session only (its second factor given, if one is due)."""
    session = await current_session(request)
    return session.staff if session is not None and not session.second_factor_due else None


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers=NO_STORE)


async def require(request: web.Request, action: str, department_id: int | None = None) -> Staff:
    """The signed-in person if they may do `action` (in `department_id`, default their own).
    Signed out: a 303 to the sign-in form, coming back here after; a second factor due: a 303 to
    it; signed in without the right: the 403 page."""
    session = await current_session(request)
    if session is None:
        raise redirect(f"/console/login?{urlencode({'next': request.path_qs})}")
    if session.second_factor_due:
        raise redirect("/console/totp")
    if not can(session.staff, action, department_id):
        raise PageAnswer(forbidden_page(request, session.staff))
    return session.staff


def forbidden_page(request: web.Request, staff: Staff) -> web.Response:
    said = words(page_lang(request))
    return console_page(request, "message.html", staff, status=403, title=said.gettext("Not allowed"),
                        text=said.gettext("Your role does not allow this page or action. Ask your department's "
                                          "admin if you need it."))


# -- pages ------------------------------------------------------------------------------------------


def page_lang(request: web.Request) -> str:
    """`?lang=` (then kept in a cookie), else the cookie, else Simplified Chinese."""
    for wanted in (request.query.get("lang"), request.cookies.get(LANG_COOKIE)):
        if wanted in LOCALES:
            return wanted
    return DEFAULT_LOCALE


def _nav(request: web.Request, staff: Staff | None) -> list[dict[str, Any]]:
    if staff is None:
        return []
    return [{"href": href, "label": label, "current": request.path.startswith(href)}
            for href, label, action in NAV if can(staff, action)]


def console_page(request: web.Request, template: str, staff: Staff | None, *, status: int = 200,
                 form: str = "console", **context: Any) -> web.Response:
    """`templates/console/<template>` in the console's layout and the person's language; its forms
    post as `form` (`csrf`), or any other form through `csrf_for(name)`."""
    lang = page_lang(request)
    languages = language_links(request, lang)
    html = environment(services(request).settings.templates_dir, lang, "console").get_template(template).render(
        lang=lang, staff=staff, nav=_nav(request, staff), role_names=ROLE_NAMES, languages=languages, csrf_field=CSRF_FIELD,
        csrf=form_token(request, form), csrf_for=functools.partial(form_token, request),
        signout_csrf=form_token(request, "sign-out") if staff else "", **context,
    )
    response = web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)
    _set_cookies(request, response, lang)
    return response


def _set_cookies(request: web.Request, response: web.StreamResponse, lang: str) -> None:
    secure = services(request).settings.public_url.startswith("https://")
    if _FRESH_PRE in request:
        response.set_cookie(PRE_COOKIE, request[_FRESH_PRE], path=PATH, httponly=True, samesite="Strict",
                            secure=secure, max_age=int(CSRF_TTL.total_seconds()))
    if request.query.get("lang") in LOCALES and request.cookies.get(LANG_COOKIE) != lang:
        response.set_cookie(LANG_COOKIE, lang, path=PATH, samesite="Strict", secure=secure, max_age=365 * 24 * 3600)


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    hours = services(request).settings.console_session_hours
    response.set_cookie(COOKIE, token, path=PATH, httponly=True, samesite="Strict", max_age=int(hours * 3600),
                        secure=services(request).settings.public_url.startswith("https://"))


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PATH)


def address(request: web.Request) -> str:
    return client_address(request, services(request).settings.proxy_hops)


# -- CSRF -------------------------------------------------------------------------------------------


def _binding(request: web.Request) -> str:
    """What a token is bound to: the session cookie, or before one the sign-in form's own cookie."""
    cookie = request.cookies.get(COOKIE) or request.cookies.get(PRE_COOKIE)
    if not cookie:
        if _FRESH_PRE not in request:
            request[_FRESH_PRE] = secrets.token_urlsafe(32)
        cookie = request[_FRESH_PRE]
    return cookie


def form_token(request: web.Request, form: str) -> str:
    return csrf_token(request, _CSRF_PURPOSE, form, _binding(request))


def form_token_valid(request: web.Request, form: str, fields: dict[str, str]) -> bool:
    """Whether `fields` carry a good token of `form` (for a form that answers a refusal itself)."""
    sent = request.cookies.get(COOKIE) or request.cookies.get(PRE_COOKIE)
    return csrf_genuine(request, _CSRF_PURPOSE, form, fields.get(CSRF_FIELD, ""), sent)


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted urlencoded fields (a repeated name keeps its last value; `read_form_multi` for lists)."""
    return dict(await read_form_multi(request))


async def read_form_multi(request: web.Request) -> list[tuple[str, str]]:
    return await form_pairs(request, _FORM_BYTES, _FORM_FIELDS)


async def checked_form(request: web.Request, form: str) -> dict[str, str]:
    """The posted fields of `form` once its CSRF token is good; otherwise a 403 page saying to send
    it again (raised as PageAnswer), with a link back to where the form was."""
    fields = await read_form(request)
    if not form_token_valid(request, form, fields):
        said = words(page_lang(request))
        raise PageAnswer(console_page(request, "message.html", await current_staff(request), status=403,
                                      title=said.gettext("Please send the form again"), text=said.gettext(EXPIRED),
                                      back=_same_site_back(request)))
    return fields


def _same_site_back(request: web.Request) -> str:
    """Where the refused form was: the path it was posted to (forms post to their own page)."""
    return request.path if request.path.startswith(PATH) else PATH

"""The admin page (`/admin`): a department's figures for a period, as in the report API, with
charts drawn as SVG on the server (`pushsvc.core.charts`), so the page runs no script.

Signing in with the admin token gives a session cookie: HttpOnly, SameSite=Strict, Secure when
the service is public over https, naming a server-side session (`pushsvc.web.admin_sessions`)
that signing out ends at once, that lasts SESSION_TTL, and that a change of PUSHSVC_ADMIN_TOKEN
ends. The sign-in and sign-out forms carry the site's CSRF tokens (`pushsvc.web.csrf`).
"""

from __future__ import annotations

import hmac
from datetime import date
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from redis.exceptions import RedisError

from pushsvc.channels import CHANNELS
from pushsvc.core.clock import now
from pushsvc.core.figures import DepartmentRef, duration
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_date, local_time
from pushsvc.http.pages import page
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, file_response, services
from pushsvc.i18n import Words, words
from pushsvc.metrics import ProviderState, provider_states
from pushsvc.reports.department import department_report
from pushsvc.reports.figures_page import FUNNEL_MAX, asked_period, channel_names, charts
from pushsvc.reports.spreadsheet import csv_filename, report_csv
from pushsvc.store.reports import department_refs
from pushsvc.web import csrf
from pushsvc.web.admin_sessions import SESSION_TTL, close_session, is_open, open_session
from pushsvc.web.forms import LOCALES, language_links, read_form, redis_needed

SESSION_COOKIE = "pushsvc_admin"
LOGIN_FORM, LOGOUT_FORM = "admin-login", "admin-logout"
NO_STORE = {"Cache-Control": "no-store"}
EXPIRED = N_("The form expired; please send it again.")

# -- the session ------------------------------------------------------------------------------------


async def signed_in(request: web.Request) -> bool:
    """Whether the request carries a session that is open: not signed out, not expired."""
    return await is_open(services(request), request.cookies.get(SESSION_COOKIE, ""))


def _lang(value: str | None) -> str:
    return value if value in LOCALES else "zh-CN"


def _render(request: web.Request, template: str, status: int, lang: str, form: str, **context: Any) -> web.Response:
    """A page in `lang` whose form posts as `form` (its CSRF token), with links to it in the other languages."""
    response = page(request, template, status=status, lang=lang,
                    languages=language_links(request, lang), csrf_field=csrf.FIELD,
                    csrf=csrf.form_token(request, form), **context)
    csrf.set_cookie(request, response)
    response.headers.update(NO_STORE)
    return response


def login_page(request: web.Request, status: int, lang: str, error: str | None = None) -> web.Response:
    return _render(request, "admin_login.html", status, lang, LOGIN_FORM, error=error)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **NO_STORE})


LANG = Param("lang", "page language", schema={"type": "string", "enum": list(LOCALES)})


@endpoint("GET", "/admin/login", summary="Admin sign-in form", tag="admin", html=True, query=(LANG,))
async def admin_login_form(request: web.Request) -> web.Response:
    return login_page(request, 200, _lang(request.query.get("lang")))


@endpoint("POST", "/admin/login", summary="Sign in with the admin token: a session cookie, then to /admin",
          tag="admin", html=True, status=303, body_media="application/x-www-form-urlencoded",
          errors=(401, 403, 413, 503))
@redis_needed
async def admin_login(request: web.Request) -> web.Response:
    svc = services(request)
    form = await read_form(request)
    lang = _lang(form.get("lang"))
    if not csrf.valid(request, LOGIN_FORM, form):
        return login_page(request, 403, lang, words(lang).gettext(EXPIRED))
    if not hmac.compare_digest(form.get("token", "").strip().encode(), svc.settings.admin_token.encode()):
        return login_page(request, 401, lang, words(lang).gettext("That token is not right."))
    response = _redirect(f"/admin?{urlencode({'lang': lang})}")
    session = await open_session(svc)
    response.set_cookie(SESSION_COOKIE, session, max_age=int(SESSION_TTL.total_seconds()), path="/admin",
                        httponly=True, samesite="Strict", secure=svc.settings.public_url.startswith("https://"))
    return response


@endpoint("POST", "/admin/logout", summary="Sign out: the session ends (server side) and its cookie is removed",
          tag="admin", html=True, status=303, body_media="application/x-www-form-urlencoded", errors=(403, 413, 503))
@redis_needed
async def admin_logout(request: web.Request) -> web.Response:
    form = await read_form(request)
    lang = _lang(form.get("lang"))
    if not csrf.valid(request, LOGOUT_FORM, form):
        return login_page(request, 403, lang, words(lang).gettext(EXPIRED))
    await close_session(services(request), request.cookies.get(SESSION_COOKIE, ""))
    response = _redirect(f"/admin/login?{urlencode({'lang': lang})}")
    response.del_cookie(SESSION_COOKIE, path="/admin")
    return response


@endpoint("GET", "/static/admin.css", summary="The admin page's stylesheet", tag="pages", html=True)
async def admin_stylesheet(request: web.Request) -> web.Response:
    css = (services(request).settings.templates_dir / "web" / "admin.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


# -- the figures ------------------------------------------------------------------------------------

PERIOD_QUERY = (
    Param("department_id", "the department (default: the first by name)", schema={"type": "integer", "minimum": 1}),
    Param("from", "first local date (default: 1 January this year)", schema={"type": "string", "format": "date"}),
    Param("to", "last local date, included (default: today)", schema={"type": "string", "format": "date"}),
)


async def _choice(request: web.Request, t: Words) -> tuple[list[DepartmentRef], DepartmentRef | None, date, date, dict[str, str]]:
    """The departments, the one chosen, the period, and what is wrong with the query (field -> message)."""
    async with services(request).db.read() as conn:
        departments = await department_refs(conn)
    first, last, errors = asked_period(request.query.get("from"), request.query.get("to"), local_date(now()), t)
    raw = request.query.get("department_id", "")
    chosen = next((d for d in departments if str(d.id) == raw), None) if raw else (departments[0] if departments else None)
    if raw and chosen is None:
        errors["department_id"] = t.gettext("No such department.")
    return departments, chosen, first, last, errors


@endpoint("GET", "/admin", summary="The admin page: a department's figures and charts for a period (session cookie)",
          tag="admin", html=True, errors=(401, 422), query=(*PERIOD_QUERY, LANG))
async def admin_page(request: web.Request) -> web.Response:
    lang = _lang(request.query.get("lang"))
    if not await signed_in(request):
        return login_page(request, 401, lang)
    t = words(lang)
    departments, chosen, first, last, errors = await _choice(request, t)
    report = await department_report(services(request).db, chosen.id, first, last) if chosen and not errors else None
    query = {"department_id": chosen.id if chosen else "", "from": first, "to": last}
    return _render(
        request, "admin.html", 422 if errors else 200, lang, LOGOUT_FORM,
        providers=await _providers_down(request), provider_names=provider_names(t), at=now(),
        departments=departments, chosen=chosen, errors=errors, report=report, channels=list(CHANNELS),
        raw_from=request.query.get("from", first.isoformat()), raw_to=request.query.get("to", last.isoformat()),
        charts=charts(report, t) if report else None, channel_names=channel_names(t),
        csv_url=f"/admin/report.csv?{urlencode(query)}", duration=duration, local_time=local_time, funnel_max=FUNNEL_MAX,
    )


@endpoint("GET", "/admin/report.csv", summary="The admin page's report as the CSV spreadsheet (session cookie)",
          tag="admin", errors=(401, 404, 422), query=PERIOD_QUERY)
async def admin_report_csv(request: web.Request) -> web.StreamResponse:
    lang = "zh-CN"
    if not await signed_in(request):
        return login_page(request, 401, lang)
    _, chosen, first, last, errors = await _choice(request, words(lang))
    if errors or chosen is None:
        raise Problem(422 if errors else 404, "; ".join(f"{k}: {v}" for k, v in errors.items()) or "no department")
    report = await department_report(services(request).db, chosen.id, first, last)
    response = file_response(report_csv(report), csv_filename(report), "text/csv")
    response.headers.update(NO_STORE)
    return response


async def _providers_down(request: web.Request) -> list[ProviderState] | None:
    """The providers whose circuit breaker is open, first down first; None when Redis cannot say."""
    try:
        states = await provider_states(services(request).redis)
    except (RedisError, OSError):
        return None
    return sorted((p for p in states if p.down_since is not None), key=lambda p: p.down_since or now())


def provider_names(t: Words) -> dict[str, str]:
    return {"smtp": t.gettext("SMTP relay"), "sms-gateway": t.gettext("SMS gateway"),
            "wechat-template": t.gettext("WeChat template messages"), "wechat-robot": t.gettext("WeChat group robots")}

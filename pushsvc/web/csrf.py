"""CSRF protection for the public forms: a signed per-form token (`pushsvc.http.forms`) bound to
a site-wide cookie, which the first page a browser gets sets (random, HttpOnly, SameSite=Lax).

The one-click unsubscribe (`POST /u/{token}`, RFC 8058) is deliberately not covered: mail clients
post it without cookies, and its signed path is the proof.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from aiohttp import web

from pushsvc.http.forms import csrf_genuine, csrf_token
from pushsvc.http.routing import services

COOKIE = "pushsvc_csrf"
FIELD = "csrf_token"
_PURPOSE = "csrf"
_COOKIE_AGE = 7 * 24 * 3600
_FRESH = web.RequestKey("csrf_fresh_cookie", str)


def _cookie(request: web.Request) -> str:
    """The browser's cookie, or a new one that `set_cookie` will send with the response."""
    if _FRESH in request:
        return request[_FRESH]
    cookie = request.cookies.get(COOKIE, "")
    if not (20 <= len(cookie) <= 64 and cookie.isascii()):
        cookie = request[_FRESH] = secrets.token_urlsafe(32)
    return cookie


def form_token(request: web.Request, form: str) -> str:
    return csrf_token(request, _PURPOSE, form, _cookie(request))


def valid(request: web.Request, form: str, fields: Mapping[str, str]) -> bool:
    return csrf_genuine(request, _PURPOSE, form, fields.get(FIELD, ""), request.cookies.get(COOKIE))


def set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if _FRESH in request:
        response.set_cookie(
            COOKIE, request[_FRESH], max_age=_COOKIE_AGE, path="/", httponly=True, samesite="Lax",
            secure=services(request).settings.public_url.startswith("https://"),
        )

"""CSRF protection for the public forms: a signed per-form token bound to a cookie.

The first page a browser gets sets a random cookie (HttpOnly, SameSite=Lax); each form carries a
token signed with the service's secret that names the form and a digest of that cookie. A post
counts only when its token is genuine, unexpired, for this form and for the cookie the browser
sent back: another site can neither read the token nor set our cookie. A browser that says the
post came from another site (Sec-Fetch-Site) is refused whatever it carries.

The one-click unsubscribe (`POST /u/{token}`, RFC 8058) is deliberately not covered: mail clients
post it without cookies, and its signed path is the proof.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import timedelta

from aiohttp import web

from pushsvc.core.tokens import BadToken
from pushsvc.http.routing import services

COOKIE = "pushsvc_csrf"
FIELD = "csrf_token"
_PURPOSE = "csrf"
_TTL = timedelta(hours=12)  # a form left open overnight is sent again, not lost: see forms.py
_COOKIE_AGE = 7 * 24 * 3600
_FRESH = web.RequestKey("csrf_fresh_cookie", str)


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()[:32]


def _cookie(request: web.Request) -> str:
    """The browser's cookie, or a new one that `set_cookie` will send with the response."""
    if _FRESH in request:
        return request[_FRESH]
    cookie = request.cookies.get(COOKIE, "")
    if not (20 <= len(cookie) <= 64 and cookie.isascii()):
        cookie = request[_FRESH] = secrets.token_urlsafe(32)
    return cookie


def form_token(request: web.Request, form: str) -> str:
    return services(request).signer.sign(_PURPOSE, {"f": form, "n": _digest(_cookie(request))}, ttl=_TTL)


def valid(request: web.Request, form: str, fields: Mapping[str, str]) -> bool:
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return False
    cookie = request.cookies.get(COOKIE)
    token = fields.get(FIELD, "")
    if not cookie or not token:
        return False
    try:
        payload = services(request).signer.verify(_PURPOSE, token)
    except BadToken:
        return False
    return payload.get("f") == form and payload.get("n") == _digest(cookie)


def set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if _FRESH in request:
        response.set_cookie(
            COOKIE, request[_FRESH], max_age=_COOKIE_AGE, path="/", httponly=True, samesite="Lax",
            secure=services(request).settings.public_url.startswith("https://"),
        )

"""What every HTML form shares, public pages and console alike: the page languages and links to
the page in each, reading a posted urlencoded body, and CSRF tokens bound to a cookie.

A CSRF token is signed with the service's secret and names its form and a digest of a cookie the
browser holds (the public pages' site-wide cookie, the console's session cookie): another site can
neither read the token nor set our cookie. A browser that says a post came from another site
(Sec-Fetch-Site) is refused whatever it carries.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any, get_args
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from pushsvc.core.models import Locale
from pushsvc.core.tokens import BadToken
from pushsvc.http.routing import Param, read_body, services

LOCALES: tuple[str, ...] = get_args(Locale)
FORM_MEDIA = "application/x-www-form-urlencoded"
LANG = Param("lang", "page language: zh-CN (default), zh-HK or en")
# Each language by its own name: data, not a translation.
LANGUAGE_NAMES = {"zh-CN": "简体中文", "zh-HK": "繁體中文", "en": "English"}
CSRF_TTL = timedelta(hours=12)  # a form left open overnight is sent again, not lost


def language_links(request: web.Request, locale: str) -> list[dict[str, Any]]:
    """This page in each language; a GET keeps its query (a QR's pre-filled choices), a POST's
    answer links to the page's GET."""
    kept = [(k, v) for k, v in request.query.items() if k != "lang"] if request.method == "GET" else []
    return [{"code": code, "name": LANGUAGE_NAMES[code], "current": code == locale,
             "href": f"{request.path}?{urlencode([*kept, ('lang', code)])}"} for code in LOCALES]


async def form_pairs(request: web.Request, max_bytes: int, max_fields: int) -> list[tuple[str, str]]:
    """The posted urlencoded fields in order. Anything else (or a malformed body) reads as no
    fields, which the CSRF check then refuses."""
    raw = await read_body(request, max_bytes)
    try:
        return parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:
        return []


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()[:32]


def csrf_token(request: web.Request, purpose: str, form: str, cookie: str) -> str:
    """A token for `form`, good only with `cookie` sent back."""
    return services(request).signer.sign(purpose, {"f": form, "n": _digest(cookie)}, ttl=CSRF_TTL)


def csrf_genuine(request: web.Request, purpose: str, form: str, token: str, cookie: str | None) -> bool:
    """Whether `token` is genuine, unexpired, for `form` and for the `cookie` the browser sent."""
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site") or not token or not cookie:
        return False
    try:
        payload = services(request).signer.verify(purpose, token)
    except BadToken:
        return False
    return payload.get("f") == form and payload.get("n") == _digest(cookie)

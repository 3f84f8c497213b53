"""HTML answers: the pages' templates, their security headers, and the one-message page that
any layer may answer with (a 404, a 429 from the request limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from pushsvc.http.routing import services

# No script, nothing from elsewhere, no framing: the pages work without JavaScript anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_environments: dict[Path, jinja2.Environment] = {}


def _env(templates_dir: Path) -> jinja2.Environment:
    if templates_dir not in _environments:
        _environments[templates_dir] = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir / "web"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    return _environments[templates_dir]


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = _env(services(request).settings.templates_dir).get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def message_page(request: web.Request, status: int, title: str, text: str) -> web.Response:
    return page(request, "message.html", status=status, title=title, text=text)



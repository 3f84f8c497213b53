"""HTML answers: the pages' templates, their security headers, and the one-message page that
any layer may answer with (a 404, a 429 from the request limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.http.routing import services
from pushsvc.i18n import translations

# No script, nothing from elsewhere, no framing: the pages work without JavaScript anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_environments: dict[tuple[Path, str], jinja2.Environment] = {}


def environment(templates_dir: Path, locale: str, folder: str = "web") -> jinja2.Environment:
    """The templates of `templates_dir/folder` (`web`: the public pages, `console`: the console's)
    in `locale`. One environment per folder and locale: jinja's i18n extension installs a locale's
    catalogue in the environment, so its compiled templates are kept per locale too."""
    key = (templates_dir / folder, locale)
    if key not in _environments:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir / folder),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_translations(translations(locale), newstyle=True)
        _environments[key] = env
    return _environments[key]


def page(request: web.Request, template: str, status: int = 200, *, lang: str = DEFAULT_LOCALE,
         **context: Any) -> web.Response:
    """`template` rendered in `lang`: its `_()` and `{% trans %}` words, and `lang` in its context."""
    templates = environment(services(request).settings.templates_dir, lang)
    html = templates.get_template(template).render(lang=lang, **context)
    return web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def message_page(request: web.Request, status: int, title: str, text: str) -> web.Response:
    return page(request, "message.html", status=status, title=title, text=text)



"""The console's stylesheets and scripts, served from `templates/console/` by this app (the CSP
allows scripts and styles from this site only; no CDN). Any `*.css` or `*.js` file there is served
under `/console/static/<name>`: the console's own, and the ones its pages add (targeting.js,
progress.js)."""

from __future__ import annotations

import re

from aiohttp import web

from pushsvc.console.session import console_endpoint
from pushsvc.http.routing import services

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(css|js)$")
_TYPES = {"css": "text/css", "js": "text/javascript"}


@console_endpoint("GET", "/console/static/{name}", summary="The console's stylesheets and scripts", errors=(404,))
async def console_static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = _NAME.match(name)
    path = services(request).settings.templates_dir / "console" / name
    if found is None or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(text=path.read_text(encoding="utf-8"), content_type=_TYPES[found.group(1)],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

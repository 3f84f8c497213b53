"""GET /openapi.json, generated from the endpoint registry and the same pydantic models the
handlers validate with."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from pushsvc import __version__
from pushsvc.core.models import Problem
from pushsvc.http.limits import REQUEST_LINE_MAX, limited_per_address
from pushsvc.http.problems import TITLES
from pushsvc.http.routing import ENDPOINTS, Endpoint, endpoint, json_response, services
from pushsvc.settings import Settings

REF = "#/components/schemas/{model}"
TEXT = {"schema": {"type": "string"}}
# What a path's suffix says it serves (qr.png, site.css), and what `?format=` asks for.
SUFFIX_MEDIA = {".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml", ".csv": "text/csv",
                ".json": "application/json", ".atom": "application/atom+xml", ".rss": "application/rss+xml"}
FORMAT_MEDIA = {"json": "application/json", "csv": "text/csv"}
# Text in the path (tokens, codes, case numbers) and the query: what fits the request line even
# percent-encoded (up to 12 bytes a character).
PATH_TEXT_MAX = 500
QUERY_TEXT_MAX = 200
# A form is fields of text; the body limit bounds the whole.
FORM = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2000}, "maxProperties": 50}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _operation(ep: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag], "operationId": ep.handler.__name__}
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1} if name == "id"
         else {"type": "string", "maxLength": PATH_TEXT_MAX}}
        for name in _path_params(ep.path)
    ]
    params += [{"name": p.name, "in": "query", "required": p.required, "description": p.description,
                "schema": _bounded(p.schema)} for p in ep.query]
    if params:
        op["parameters"] = params
    if ep.auth != "none":
        op["security"] = [{"bearer": []}]
    if ep.body is not None:
        content = {"schema": _schema(ep.body, components)} if ep.body_media == "application/json" else {"schema": {"type": "string"}}
        op["requestBody"] = {"required": True, "content": {ep.body_media: content}}
    elif ep.body_media != "application/json":
        schema = FORM if ep.body_media == "application/x-www-form-urlencoded" else {"type": "string"}
        op["requestBody"] = {"required": True, "content": {ep.body_media: {"schema": schema}}}
    ok: dict[str, Any] = {"description": "OK"}
    content = _success_content(ep, components)
    if content and not 300 <= ep.status < 400:
        ok["content"] = content
    responses: dict[str, Any] = {str(status): ok for status in (ep.status, *ep.also)}
    error: dict[str, Any] = {"application/problem+json": {"schema": _schema(Problem, components)}}
    if not ep.path.startswith("/v1/"):
        error["text/html"] = TEXT  # pages answer most errors with a page
    for status in sorted({*ep.errors, *_implied_errors(ep)}):
        responses[str(status)] = {"description": TITLES.get(status, "Error"), "content": error}
    op["responses"] = responses
    return op


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "string" and not ({"enum", "maxLength", "format"} & schema.keys()):
        return {**schema, "maxLength": QUERY_TEXT_MAX}
    return schema


def _success_content(ep: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    """The response model's JSON, an HTML page, or what the path's suffix or `?format=` says."""
    content: dict[str, Any] = {}
    if ep.response is not None:
        content["application/json"] = {"schema": _schema(ep.response, components)}
    by_suffix = SUFFIX_MEDIA.get(PurePosixPath(ep.path).suffix)
    if by_suffix:
        content.setdefault(by_suffix, {"schema": {}})
    elif ep.html:
        content["text/html"] = TEXT
    formats = next((p.schema.get("enum", []) for p in ep.query if p.name == "format"), [])
    for fmt in formats:
        if fmt in FORMAT_MEDIA:
            content.setdefault(FORMAT_MEDIA[fmt], {"schema": {}})
    return content


def _implied_errors(ep: Endpoint) -> set[int]:
    """What every endpoint of its kind may answer: 401 and 429 with credentials, 429 on pages
    (per client address), 413 with a body."""
    implied = {401, 429} if ep.auth != "none" else set()
    if limited_per_address(ep.path):
        implied.add(429)
    if ep.body is not None or ep.body_media != "application/json":
        implied.add(413)
    return implied


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _description(s: Settings | None) -> str:
    def setting(name: str) -> object:
        return getattr(s, name) if s is not None else Settings.model_fields[name].default

    return (
        "Targeted push of government policy: e-mail, SMS, WeChat, QR.\n\n"
        f"Limits: a request body may be at most {setting('max_body_bytes')} bytes "
        f"(PUSHSVC_MAX_BODY_BYTES), a CSV import {setting('max_import_bytes')} bytes (PUSHSVC_MAX_IMPORT_BYTES); "
        f"more is refused with 413. The request line (path and query) may be at most {REQUEST_LINE_MAX} bytes. "
        "Fields carry their own limits (maxLength, maxItems, maxProperties). "
        f"A department key may make {setting('api_requests_per_minute')} requests a minute "
        f"(PUSHSVC_API_REQUESTS_PER_MINUTE) and a client address {setting('page_requests_per_minute')} "
        "page requests a minute (PUSHSVC_PAGE_REQUESTS_PER_MINUTE; 0: no limit); over a limit the answer is "
        "429 with Retry-After. Errors under /v1/ are application/problem+json (RFC 9457); pages answer "
        "errors with an HTML page."
    )


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """`settings`: the limits the description states (the defaults when None)."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pushsvc", "version": __version__, "description": _description(settings)},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@endpoint("GET", "/openapi.json", summary="This document", tag="operations")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document(services(request).settings))

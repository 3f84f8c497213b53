"""One registry of endpoints: the router and the OpenAPI document are both built from it, so a
route cannot exist without being documented."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from pushsvc.core.errors import FieldError
from pushsvc.core.models import pydantic_errors
from pushsvc.http.problems import Problem, invalid
from pushsvc.services import Services

Auth = Literal["none", "admin", "department", "department_or_admin"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICES = web.AppKey("services", Services)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    body: type[BaseModel] | None
    body_media: str
    response: type[BaseModel] | None
    status: int
    query: tuple[Param, ...]
    errors: tuple[int, ...]
    html: bool
    max_body: int | None
    also: tuple[int, ...] = ()  # further success statuses with the same body (200 for a repeat of a 202)


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    auth: Auth = "none",
    body: type[BaseModel] | None = None,
    body_media: str = "application/json",
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: tuple[Param, ...] = (),
    errors: tuple[int, ...] = (),
    html: bool = False,
    max_body: int | None = None,
    also: tuple[int, ...] = (),
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(
            Endpoint(method, path, handler, summary, tag, auth, body, body_media, response, status, query,
                     errors, html, max_body, also)
        )
        return handler

    return register


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whether or not Content-Length told the truth."""
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the body may be at most {limit} bytes")
    # Read to the end: one read() returns what has arrived so far, which for a large body sent in
    # several segments was a prefix (a receipts batch then failed its signature check now and then).
    data = bytearray()
    async for chunk in request.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise Problem(413, f"the body may be at most {limit} bytes")
    return bytes(data)


async def json_body(request: web.Request) -> Any:
    raw = await read_body(request, services(request).settings.max_body_bytes)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # [[[[…]]]] nested deeper than the parser goes, well within the body limit
        raise Problem(400, "the body is not valid JSON: nested too deeply") from None


def parse_model(model: type[M], data: Any, root: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(pydantic_errors(exc, root)) from None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(data, BaseModel):
        text = data.model_dump_json()
    else:
        text = json.dumps(data, ensure_ascii=False, default=str)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def file_response(body: bytes, filename: str, content_type: str) -> web.Response:
    """A download: the browser saves it under `filename` instead of showing it."""
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def int_param(request: web.Request, name: str, default: int | None = None, *, lo: int = 0, hi: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise Problem(422, f"query parameter '{name}' is required", [FieldError(name, "is required")])
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(422, f"query parameter '{name}' must be an integer", [FieldError(name, "must be an integer")]) from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise Problem(422, f"query parameter '{name}' must be {bound}", [FieldError(name, f"must be {bound}")])
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise Problem(404, f"no such {name}") from None
    if value <= 0 or value >= 2**63:
        raise Problem(404, f"no such {name}")
    return value


LIMIT = Param("limit", "page size (default 100, at most 1000)", schema={"type": "integer", "minimum": 1, "maximum": 1000})
CURSOR = Param("cursor", "opaque cursor from the previous page's next_cursor")


def after_cursor(request: web.Request) -> int:
    raw = request.query.get("cursor")
    if not raw:
        return 0
    try:
        after = int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except ValueError:
        after = -1
    if not 0 <= after < 2**63:  # a forged cursor must not reach the database as an out-of-range id
        raise Problem(422, "cursor is not one this service issued", [FieldError("cursor", "invalid")])
    return after


def next_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")

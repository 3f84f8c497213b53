"""GET /openapi.json, generated from the endpoint registry and the same pydantic models the
handlers validate with."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from pushsvc import __version__
from pushsvc.api.problems import TITLES
from pushsvc.api.routing import ENDPOINTS, Endpoint, endpoint, json_response
from pushsvc.core.models import Problem

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _operation(ep: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag], "operationId": ep.handler.__name__}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer"} if name == "id" else {"type": "string"}}
        for name in _path_params(ep.path)
    ]
    params += [{"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema}
               for p in ep.query]
    if params:
        op["parameters"] = params
    if ep.auth != "none":
        op["security"] = [{"bearer": []}]
    if ep.body is not None:
        content = {"schema": _schema(ep.body, components)} if ep.body_media == "application/json" else {"schema": {"type": "string"}}
        op["requestBody"] = {"required": True, "content": {ep.body_media: content}}
    elif ep.body_media != "application/json":
        op["requestBody"] = {"required": True, "content": {ep.body_media: {"schema": {"type": "string"}}}}
    ok: dict[str, Any] = {"description": "OK"}
    if ep.html:
        ok["content"] = {"text/html": {"schema": {"type": "string"}}}
    elif ep.response is not None:
        ok["content"] = {"application/json": {"schema": _schema(ep.response, components)}}
    responses: dict[str, Any] = {str(ep.status): ok}
    problem = {"application/problem+json": {"schema": _schema(Problem, components)}}
    for status in ep.errors:
        responses[str(status)] = {"description": TITLES.get(status, "Error"), "content": problem}
    op["responses"] = responses
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pushsvc", "version": __version__,
                 "description": "Targeted push of government policy: e-mail, SMS, WeChat, QR."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@endpoint("GET", "/openapi.json", summary="This document", tag="operations")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document())

"""What every request goes through, JSON or page: its request id, the problem+json answer for
errors, the caller's credentials, and the registered endpoints mounted on an application."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from aiohttp import web

from pushsvc.core.errors import Refused, ValidationFailed
from pushsvc.http.access_log import masked_path
from pushsvc.http.auth import CALLER, authenticate
from pushsvc.http.problems import Problem, invalid, refused
from pushsvc.http.routing import ENDPOINTS, Endpoint, Handler
from pushsvc.logs import accepted_request_id, log_context

log = logging.getLogger(__name__)
REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The caller's X-Request-Id (if usable) or a new one, on the request and every log line it causes."""
    request[REQUEST_ID] = accepted_request_id(request.headers.get("X-Request-Id"))
    with log_context(request_id=request[REQUEST_ID]):
        return await handler(request)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json (pages render their own HTML errors); never a bare 500."""
    try:
        response = await handler(request)
    except Problem as problem:
        response = problem.response()
    except ValidationFailed as exc:
        response = invalid(exc.errors).response()
    except Refused as exc:
        response = refused(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = Problem(exc.status, exc.reason).response()
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
    except (sa.exc.TimeoutError, TimeoutError):
        # No database connection or write turn came free in time: overload, not a fault. Callers
        # that retry (the SMS gateway's receipts) should, rather than count it as an error of ours.
        log.warning("busy: no database connection for %s %s in time", request.method, masked_path(request.path))
        response = Problem(503, "the service is busy; try again shortly", headers={"Retry-After": "5"}).response()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, masked_path(request.path))
        response = Problem(500, "an internal error occurred; it has been logged").response()
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    return response


def _authenticated(ep: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        request[CALLER] = await authenticate(request, ep.auth)
        return await ep.handler(request)

    return handle


def mount_endpoints(app: web.Application) -> None:
    """Every registered endpoint, behind its credentials check."""
    for ep in ENDPOINTS:
        # API ids are digits, so /v1/policies/preview is not also /v1/policies/{id} (a 405 would offer
        # GET); pages take any id and answer a bad one with their own HTML 404.
        path = ep.path.replace("{id}", r"{id:\d+}") if ep.path.startswith("/v1/") else ep.path
        app.router.add_route(ep.method, path, _authenticated(ep))

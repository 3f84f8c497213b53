"""The aiohttp application: the registered endpoints, error handling, and the services' lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import sqlalchemy as sa
from aiohttp import web

from pushsvc.api import cases, departments, gateways, health, openapi, policies, render, subscribers  # noqa: F401  (registers routes)
from pushsvc.api import dead_letters, reports  # noqa: F401  (registers routes)
from pushsvc.api.access_log import masked_path
from pushsvc.api.auth import CALLER, authenticate
from pushsvc.api.case_intake import CASE_INTAKE, CaseIntake
from pushsvc.api.limits import REQUEST_LINE_MAX, page_limits_middleware
from pushsvc.api.metrics import metrics_middleware  # also registers GET /metrics
from pushsvc.api.problems import Problem, invalid
from pushsvc.api.routing import ENDPOINTS, SERVICES, Endpoint, Handler
from pushsvc.channels import build_channels
from pushsvc.core.errors import ValidationFailed
from pushsvc.logs import accepted_request_id, log_context
from pushsvc.services import Services, open_services
from pushsvc.settings import Settings
from pushsvc.web import case_pages, digest_pages, pages, qr_pages  # noqa: F401  (registers routes)
from pushsvc.web import admin_pages  # noqa: F401  (registers routes)
from pushsvc.web import manage_pages, subscribe_pages  # noqa: F401  (registers routes)

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


def _wrap(ep: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        request[CALLER] = await authenticate(request, ep.auth)
        return await ep.handler(request)

    return handle


def build_app(settings: Settings, svc: Services | None = None) -> web.Application:
    """`svc` lets tests and the demo share services; otherwise they are opened on start-up."""
    middlewares = [request_id_middleware, metrics_middleware, problems_middleware, page_limits_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_import_bytes,
                          handler_args={"max_line_size": REQUEST_LINE_MAX})
    for ep in ENDPOINTS:
        # API ids are digits, so /v1/policies/preview is not also /v1/policies/{id} (a 405 would offer
        # GET); pages take any id and answer a bad one with their own HTML 404.
        path = ep.path.replace("{id}", r"{id:\d+}") if ep.path.startswith("/v1/") else ep.path
        app.router.add_route(ep.method, path, _wrap(ep))

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        owned = svc is None
        services = app[SERVICES] = svc or await open_services(settings)
        if not services.channels:
            # Built like the worker's but never started: the API only renders (previews, publish-time
            # checks), it opens no connection to a provider.
            services.channels = build_channels(settings, services.renderer, services.signer)
        app[CASE_INTAKE] = CaseIntake(services)
        yield
        if owned:
            await app[SERVICES].close()

    app.cleanup_ctx.append(lifetime)
    return app

"""The aiohttp application: the registered endpoints, error handling, and the services' lifetime."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from pushsvc.api import cases, departments, gateways, health, openapi, policies, render, subscribers  # noqa: F401  (registers routes)
from pushsvc.api.auth import CALLER, authenticate
from pushsvc.api.problems import Problem, invalid
from pushsvc.api.routing import ENDPOINTS, SERVICES, Endpoint, Handler
from pushsvc.channels import build_channels
from pushsvc.core.errors import ValidationFailed
from pushsvc.services import Services, open_services
from pushsvc.settings import Settings
from pushsvc.web import case_pages, pages, qr_pages  # noqa: F401  (registers routes)

log = logging.getLogger(__name__)
REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json (pages render their own HTML errors); never a bare 500."""
    request[REQUEST_ID] = request.headers.get("X-Request-Id") or uuid.uuid4().hex
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
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
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
    app = web.Application(middlewares=[problems_middleware], client_max_size=settings.max_import_bytes)
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, ep.path, _wrap(ep))

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        owned = svc is None
        services = app[SERVICES] = svc or await open_services(settings)
        if not services.channels:
            # Built like the worker's but never started: the API only renders (previews, publish-time
            # checks), it opens no connection to a provider.
            services.channels = build_channels(settings, services.renderer, services.signer)
        yield
        if owned:
            await app[SERVICES].close()

    app.cleanup_ctx.append(lifetime)
    return app

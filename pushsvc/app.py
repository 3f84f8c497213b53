"""The aiohttp application, composed of the JSON API and the pages over the shared HTTP layer,
and the services' lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

import pushsvc.api  # noqa: F401  (registers the API's endpoints)
import pushsvc.console  # noqa: F401  (registers the console's pages)
import pushsvc.web  # noqa: F401  (registers the pages)
from pushsvc.api.cases import CASE_INTAKE
from pushsvc.cases.intake import CaseIntake
from pushsvc.channels import build_channels
from pushsvc.http.limits import REQUEST_LINE_MAX, page_limits_middleware
from pushsvc.http.metrics import metrics_middleware
from pushsvc.http.routing import SERVICES
from pushsvc.http.server import mount_endpoints, problems_middleware, request_id_middleware
from pushsvc.reach.live import LiveReach
from pushsvc.services import Services, open_services
from pushsvc.settings import Settings


def build_app(settings: Settings, svc: Services | None = None) -> web.Application:
    """`svc` lets tests and the demo share services; otherwise they are opened on start-up."""
    middlewares = [request_id_middleware, metrics_middleware, problems_middleware, page_limits_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_import_bytes,
                          handler_args={"max_line_size": REQUEST_LINE_MAX})
    mount_endpoints(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        owned = svc is None
        services = app[SERVICES] = svc or await open_services(settings)
        if not services.channels:
            # Built like the worker's but never started: the API only renders (previews, publish-time
            # checks), it opens no connection to a provider.
            services.channels = build_channels(settings, services.renderer, services.signer)
        app[CASE_INTAKE] = CaseIntake(services)
        reach = None
        if settings.reach_index and services.reach is None:
            # Built in the background: previews count in SQL until it is ready, then follow it.
            services.reach = LiveReach(services.db, services.catalogue)
            reach = asyncio.create_task(services.reach.run())
        yield
        if reach is not None:
            reach.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reach
            services.reach = None
        if owned:
            await app[SERVICES].close()

    app.cleanup_ctx.append(lifetime)
    return app

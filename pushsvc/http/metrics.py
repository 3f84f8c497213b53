"""This process's HTTP figures: requests and their latency by route template (never by raw path,
so the number of series stays bounded whatever clients ask for), in the registry /metrics serves."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

from pushsvc.http.routing import Handler

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REQUESTS = Counter("pushsvc_http_requests", "HTTP requests by method, route template and status",
                   ("method", "route", "status"), registry=REGISTRY)
LATENCY = Histogram("pushsvc_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
                    ("method", "route"), registry=REGISTRY)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(unmatched)"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    began = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects travel as exceptions
        status = exc.status
        raise
    finally:
        route = route_of(request)
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - began)

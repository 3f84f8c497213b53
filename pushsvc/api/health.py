"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from aiohttp import web

from pushsvc.http.routing import endpoint, json_response, services


@endpoint("GET", "/healthz", summary="The process is up", tag="operations")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@endpoint("GET", "/readyz", summary="The database and Redis answer (503 otherwise)", tag="operations",
          errors=(503,))
async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", svc.db.ping()), ("redis", svc.redis.ping())):
        try:
            await asyncio.wait_for(probe, timeout=2)
            checks[name] = "ok"
        except Exception as exc:  # any failure to answer means not ready
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)

"""Request limits shared by every API process through Redis (pushsvc.ratelimit): a department's
key (and the admin token) per minute, answered with a problem+json 429; the public pages per
client address, answered with a 429 page. Both say when to come back in Retry-After.

A limit that cannot be checked (Redis away) lets the request through: the limits protect the
service, and refusing everyone while Redis restarts would do the opposite.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web
from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.http.pages import message_page
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Handler, services
from pushsvc.ratelimit import Rate, RateLimiter
from pushsvc.services import Services

log = logging.getLogger(__name__)

# The request line (method, path, query): aiohttp's default of 8190 bytes answers longer ones with a
# bare text/plain 400 before any of our code runs; the documented field limits fit well within this.
REQUEST_LINE_MAX = 32 * 1024

# Not public pages: the API (limited per key), and what monitoring and load balancers call.
_OPERATIONS = frozenset({"/metrics", "/healthz", "/readyz"})


def limited_per_address(path: str) -> bool:
    return not path.startswith("/v1/") and path not in _OPERATIONS


async def _retry_after(svc: Services, namespace: str, key: str, per_minute: int) -> int | None:
    """None if this request is within the limit, else whole seconds until the next one would be."""
    if per_minute <= 0:
        return None
    try:
        slot = await RateLimiter(svc.redis, namespace).reserve(key, Rate(per_minute, 60.0))
    except RedisError as exc:
        log.warning("request limit not checked (Redis: %s)", type(exc).__name__)
        return None
    return None if slot.granted else max(1, math.ceil(slot.wait))


async def within_key_limit(svc: Services, key: str, per_minute: int) -> None:
    """Raise a 429 if the caller `key` (a department, the admin) is over its `per_minute`."""
    wait = await _retry_after(svc, redis_keys.API_LIMITS, key, per_minute)
    if wait is not None:
        raise Problem(429, f"more than {per_minute} requests a minute with this key; try again in {wait} s",
                      headers={"Retry-After": str(wait)})


def client_address(request: web.Request, proxy_hops: int) -> str:
    """The peer, or behind `proxy_hops` proxies the address the outermost of them saw (each proxy
    appends the address it was called from to X-Forwarded-For, so count from the right)."""
    if proxy_hops:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(forwarded) >= proxy_hops:
            return forwarded[-proxy_hops]
    return request.remote or "unknown"


@web.middleware
async def page_limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not limited_per_address(request.path):
        return await handler(request)
    svc = services(request)
    settings = svc.settings
    wait = await _retry_after(svc, redis_keys.PAGE_LIMITS, client_address(request, settings.proxy_hops),
                              settings.page_requests_per_minute)
    if wait is None:
        return await handler(request)
    response = message_page(request, 429, "请求过多 Too many requests",
                            f"请 {wait} 秒后再试。Please try again in {wait} seconds.")
    response.headers["Retry-After"] = str(wait)
    return response

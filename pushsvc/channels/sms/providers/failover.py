"""Several SMS providers: which one takes a batch, by weight and health.

PUSHSVC_SMS_PROVIDERS lists them in order with weights ("aliyun:3,tencent:1"; a missing weight is
1; default "generic:1", the gateway pushsvc spoke first). Each batch goes first to a provider
drawn by weight among the healthy ones, then, when that one cannot take it (down, throttled, out
of credit, its reply lost and nothing taken), to the others in the listed order: healthy ones
first, the unhealthy last, so a batch is never left unsent while some provider might take it.

Health is shared by every worker through Redis, in 10-second buckets per provider: requests,
errors (a whole request refused for the provider's own reasons, unreachable or unanswered) and
slow requests (longer than PUSHSVC_SMS_FAILOVER_SLOW_SECONDS). A provider with
PUSHSVC_SMS_FAILOVER_ERRORS errors over the last PUSHSVC_SMS_FAILOVER_WINDOW_SECONDS, or more
than PUSHSVC_SMS_FAILOVER_SLOW_SHARE of its requests slow (of at least _MIN_REQUESTS), loses its
share; it gets it back when the window has moved past its errors. Counted per request, not per
number: a batch of 100 refused is one error. This sits beside the circuit breaker
(pushsvc.delivery.breaker), which still sees SMS as one provider: it opens only when every
provider fails a hand-over. Redis away: every provider counts as healthy.

The same round trip adds the providers' figures for /metrics (pushsvc.metrics reads them):
messages and requests per provider and result, and the time requests took.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.channels.sms.providers.aliyun import AliyunSms
from pushsvc.channels.sms.providers.base import SmsProvider
from pushsvc.channels.sms.providers.generic import GenericGateway
from pushsvc.channels.sms.providers.tencent import TencentSms
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

PROVIDERS: dict[str, type[SmsProvider]] = {p.name: p for p in (GenericGateway, AliyunSms, TencentSms)}
ROUTES = re.compile(r"^\s*(generic|aliyun|tencent)(:\d+)?(\s*,\s*(generic|aliyun|tencent)(:\d+)?)*\s*$")

# Counters in the metrics hash (redis_keys.METRICS), declared in pushsvc.metrics.
MESSAGES_COUNTER = "pushsvc_sms_provider_messages"  # labels: provider, result (taken | not_taken)
REQUESTS_COUNTER = "pushsvc_sms_provider_requests"  # labels: provider, result (ok | error | slow)
REQUEST_MS_COUNTER = "pushsvc_sms_provider_request_milliseconds"  # labels: provider

_BUCKET_SECONDS = 10
_MIN_REQUESTS = 20  # fewer requests in the window say nothing about a share of slow ones
REQUESTS, ERRORS, SLOW = "requests", "errors", "slow"


@dataclass(frozen=True)
class Route:
    provider: SmsProvider
    weight: int


def parse_routes(text: str) -> list[tuple[str, int]]:
    """"aliyun:3, tencent" → [("aliyun", 3), ("tencent", 1)]; ValueError when it is not such a list
    or names a provider twice."""
    if not ROUTES.match(text):
        raise ValueError(f"expected a list like 'aliyun:3,tencent:1' of {', '.join(PROVIDERS)}")
    routes = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        routes.append((name, int(weight or 1)))
    if len({name for name, _ in routes}) != len(routes):
        raise ValueError("a provider is listed twice")
    return routes


def build_routes(settings: Settings) -> list[Route]:
    return [Route(PROVIDERS[name](settings), weight) for name, weight in parse_routes(settings.sms_providers)]


def provider_named(settings: Settings, name: str) -> SmsProvider:
    return PROVIDERS[name](settings)


def order(routes: Sequence[Route], healthy: dict[str, bool], rng: random.Random | None = None) -> list[SmsProvider]:
    """The providers to try for one batch: one drawn by weight among the healthy, then the other
    healthy ones, then the unhealthy, each group in the listed order."""
    well = [r for r in routes if healthy.get(r.provider.name, True)]
    drawn = [r for r in well if r.weight > 0]
    first = (rng or random).choices(drawn, weights=[r.weight for r in drawn])[0] if drawn else None
    rest = [r for r in well if r is not first] + [r for r in routes if r not in well]
    return [r.provider for r in ([first] if first else []) + rest]


class Health:
    """`Health(settings)`: `start()` before use, `close()` at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: Redis | None = None

    async def start(self) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(self.settings.redis_url)

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    def _buckets(self, at: float) -> list[int]:
        now = int(at) // _BUCKET_SECONDS
        return list(range(now - math.ceil(self.settings.sms_failover_window_seconds / _BUCKET_SECONDS) + 1, now + 1))

    async def healthy(self, names: Sequence[str]) -> dict[str, bool]:
        """Whether each provider keeps its share now."""
        if self._redis is None or len(names) < 2:
            return dict.fromkeys(names, True)
        s, buckets = self.settings, self._buckets(time.time())
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    for b in buckets:
                        pipe.hmget(redis_keys.sms_health(name, b), [REQUESTS, ERRORS, SLOW])
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("SMS providers' health unavailable (Redis: %s): all count as healthy", type(exc).__name__)
            return dict.fromkeys(names, True)
        out: dict[str, bool] = {}
        for i, name in enumerate(names):
            rows = replies[i * len(buckets):(i + 1) * len(buckets)]
            requests, errors, slow = (sum(int(row[k] or 0) for row in rows) for k in range(3))
            sick = errors >= s.sms_failover_errors or (
                requests >= _MIN_REQUESTS and slow > s.sms_failover_slow_share * requests)
            out[name] = not sick
        return out

    async def record(self, name: str, messages: int, taken: int, error: bool, seconds: float) -> None:
        """One request to provider `name` for `messages` numbers, `taken` of them; `error`: refused
        for the provider's own reasons, unreachable or unanswered."""
        if self._redis is None:
            return
        slow = seconds > self.settings.sms_failover_slow_seconds
        key = redis_keys.sms_health(name, int(time.time()) // _BUCKET_SECONDS)
        result = "error" if error else "slow" if slow else "ok"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key, REQUESTS, 1)
                if error:
                    pipe.hincrby(key, ERRORS, 1)
                if slow:
                    pipe.hincrby(key, SLOW, 1)
                pipe.expire(key, int(self.settings.sms_failover_window_seconds) + 2 * _BUCKET_SECONDS)
                pipe.hincrby(redis_keys.METRICS, f"{REQUESTS_COUNTER}|{name}|{result}", 1)
                pipe.hincrby(redis_keys.METRICS, f"{REQUEST_MS_COUNTER}|{name}", int(seconds * 1000))
                if taken:
                    pipe.hincrby(redis_keys.METRICS, f"{MESSAGES_COUNTER}|{name}|taken", taken)
                if messages - taken:
                    pipe.hincrby(redis_keys.METRICS, f"{MESSAGES_COUNTER}|{name}|not_taken", messages - taken)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("SMS provider %s's request not counted (Redis: %s)", name, type(exc).__name__)

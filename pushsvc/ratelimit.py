"""Pacing shared by every process through Redis: at most `limit` events in any `period` seconds.

A provider's limit ("20 messages a minute per robot key") holds for every window of that length,
so a token bucket whose burst equals the limit is not enough: it lets a full burst through at
the end of one minute and another one just after it. Instead each key keeps the times of its
last `limit` slots (a Redis list, oldest first) and a new slot goes at the earliest moment that
keeps every window within the limit: `period` after the slot `limit` places back. Slots may lie
in the future: the caller then waits for its slot, or, when that is too far off, takes nothing
and learns when the next slot opens.

One Lua script decides and records atomically with Redis's own clock, so any number of workers
on any number of machines share one pace and their clocks don't have to agree.

The same limiter paces the providers' per-second limits (`ProviderPace`), a department's API key
and a client address on the public pages (`pushsvc.http.limits`). A token bucket would smooth
calls inside a second, but it lets up to twice its burst through in some one-second window;
these limits are stated per window, so the window is what is enforced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.core.clock import now
from pushsvc.core.quotas import quota_day, quota_reset

log = logging.getLogger(__name__)

# KEYS[1]: the key's slot list. ARGV: limit, period (ms), max_wait (ms).
# Returns {granted (0|1), wait (ms until the slot, or until the next one opens when not granted)}.
_RESERVE = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local n = redis.call('LLEN', KEYS[1])
local slot = now
if n > 0 then
  -- never before the newest slot: the list stays sorted even if the limit was lowered
  slot = math.max(slot, tonumber(redis.call('LINDEX', KEYS[1], -1)))
end
if n >= limit then
  slot = math.max(slot, tonumber(redis.call('LINDEX', KEYS[1], n - limit)) + period)
end
if slot - now > max_wait then
  return {0, slot - now}
end
redis.call('RPUSH', KEYS[1], slot)
redis.call('LTRIM', KEYS[1], -limit, -1)
redis.call('PEXPIREAT', KEYS[1], slot + period)
return {1, slot - now}
"""


@dataclass(frozen=True)
class Rate:
    """At most `limit` events in any window of `period` seconds."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError("a rate needs limit >= 1 and period > 0")


@dataclass(frozen=True)
class Reservation:
    """`granted`: a slot is ours, `wait` seconds from now (0 if at once). Not granted: nothing
    was taken, and the next slot opens `wait` seconds from now (if nobody else takes it)."""

    granted: bool
    wait: float


class RateLimiter:
    """`RateLimiter(redis, namespace)`: keys live under `<namespace>:` (one of pushsvc.redis_keys).
    Each key has its own pace; callers name keys after what is limited (a robot key, an account, an IP)."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._namespace = namespace
        self._script = redis.register_script(_RESERVE)

    async def reserve(self, key: str, rate: Rate, max_wait: float = 0.0) -> Reservation:
        """Take the next slot for `key` if it opens within `max_wait` seconds; don't wait for it."""
        granted, wait_ms = await self._script(
            keys=[f"{self._namespace}:{key}"],
            args=[rate.limit, max(1, round(rate.period * 1000)), max(0, int(max_wait * 1000))],
        )
        return Reservation(bool(granted), int(wait_ms) / 1000)

    async def acquire(self, key: str, rate: Rate, max_wait: float = 0.0) -> Reservation:
        """Like `reserve`, and when the slot is ours, sleep until it comes."""
        reservation = await self.reserve(key, rate, max_wait)
        if reservation.granted and reservation.wait > 0:
            await asyncio.sleep(reservation.wait)
        return reservation


# Providers count a call when it arrives, and arrivals jitter by milliseconds around their slots:
# a window a little longer than the second keeps one second's calls from landing in the next.
_ARRIVAL_GUARD_SECONDS = 0.05
_NO_REDIS_WAIT_SECONDS = 5.0


class ProviderPace:
    """At most `per_second` calls a second to one provider, from every worker together.
    `ProviderPace(redis_url, provider, per_second)`; 0 means no limit and no Redis connection.
    `start()` before use, `close()` at shutdown."""

    def __init__(self, redis_url: str, provider: str, per_second: int) -> None:
        self._url = redis_url
        self._provider = provider
        self._rate = Rate(per_second, 1.0 + _ARRIVAL_GUARD_SECONDS) if per_second > 0 else None
        self._redis: Redis | None = None
        self._limiter: RateLimiter | None = None
        # When the next slot opens at the earliest (monotonic clock), as the last refusal said:
        # slots are only ever added, so it cannot open sooner, and a caller that will not wait
        # that long (the rest of a batch) is answered without asking Redis again.
        self._opens_at = 0.0

    async def start(self) -> None:
        if self._rate is not None and self._redis is None:
            self._redis = Redis.from_url(self._url)
            self._limiter = RateLimiter(self._redis, redis_keys.PROVIDER_PACE)

    async def close(self) -> None:
        redis, self._redis, self._limiter = self._redis, None, None
        if redis is not None:
            await redis.aclose()

    async def turn(self, max_wait: float) -> datetime | None:
        """None once it is our turn to call (having slept until it came). Otherwise the time to try
        again: the next slot is more than `max_wait` seconds off (nothing was taken), or Redis is
        away (without the shared pace nobody may call)."""
        if self._limiter is None or self._rate is None:
            return None
        known_wait = self._opens_at - time.monotonic()
        if known_wait > max_wait:
            return now() + timedelta(seconds=known_wait)
        try:
            slot = await self._limiter.acquire(self._provider, self._rate, max_wait=max(0.0, max_wait))
        except RedisError as exc:
            log.warning("%s pace unavailable (Redis: %s): holding the call", self._provider, type(exc).__name__)
            wait = _NO_REDIS_WAIT_SECONDS
        else:
            if slot.granted:
                return None
            wait = slot.wait
            self._opens_at = time.monotonic() + wait
        return now() + timedelta(seconds=wait)


# KEYS: the day's counters, one per message (a key twice: two messages). ARGV: limit, expiry (Unix s).
# Returns a 1 (taken) or 0 (the quota is spent) per key.
_TAKE = """
local limit = tonumber(ARGV[1])
local taken = {}
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') < limit then
    redis.call('INCR', key)
    redis.call('EXPIREAT', key, ARGV[2])
    taken[i] = 1
  else
    taken[i] = 0
  end
end
return taken
"""
# KEYS: counters of messages taken but not sent after all; never below 0.
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""
# A counter outlives its day by this much: a worker whose clock is a little behind still finds it.
_QUOTA_KEY_MARGIN = timedelta(hours=1)


class DailyQuota:
    """At most `limit` messages a local day per key (a number, an account), from every worker
    together: `DailyQuota(redis_url, family, limit)`, `family` naming what is capped (see
    redis_keys.daily_quota); 0 means no quota and no Redis connection. `start()` before use,
    `close()` at shutdown.

    Messages are counted when taken, before they are sent, so two workers cannot both take the last
    one; those a provider did not take after all are given back. A provider's own word that the
    quota is spent (its error code) spends ours for the rest of the day. Redis away: nothing is
    taken, and the messages wait a few seconds (a quota nobody can count cannot be kept)."""

    def __init__(self, redis_url: str, family: str, limit: int) -> None:
        self._url = redis_url
        self._family = family
        self.limit = limit
        self._redis: Redis | None = None
        self._take: AsyncScript | None = None
        self._give_back: AsyncScript | None = None

    async def start(self) -> None:
        if self.limit > 0 and self._redis is None:
            self._redis = Redis.from_url(self._url)
            self._take = self._redis.register_script(_TAKE)
            self._give_back = self._redis.register_script(_GIVE_BACK)

    async def close(self) -> None:
        redis, self._redis, self._take, self._give_back = self._redis, None, None, None
        if redis is not None:
            await redis.aclose()

    def _keys(self, keys: Sequence[str], at: datetime) -> list[str]:
        day = quota_day(at)
        return [redis_keys.daily_quota(self._family, day, k) for k in keys]

    async def take(self, keys: Sequence[str]) -> tuple[list[bool], datetime]:
        """One message for each key (in order): whether it is within the day's quota, and when
        those that are not may go (the quota's reset)."""
        if self._take is None:
            return [True] * len(keys), now()
        at = now()
        reset = quota_reset(at)
        if not keys:
            return [], reset
        try:
            taken = await self._take(keys=self._keys(keys, at),
                                     args=[self.limit, int((reset + _QUOTA_KEY_MARGIN).timestamp())])
        except RedisError as exc:
            log.warning("%s quota unavailable (Redis: %s): holding the messages", self._family, type(exc).__name__)
            return [False] * len(keys), at + timedelta(seconds=_NO_REDIS_WAIT_SECONDS)
        return [bool(t) for t in taken], reset

    async def give_back(self, keys: Sequence[str]) -> None:
        """Messages taken by `take` that were not sent after all (refused, not tried)."""
        if self._give_back is None or not keys:
            return
        try:
            await self._give_back(keys=self._keys(keys, now()))
        except RedisError as exc:
            log.warning("%s quota: %d messages not given back (Redis: %s)", self._family, len(keys),
                        type(exc).__name__)

    async def spend(self, keys: Sequence[str]) -> datetime:
        """The provider says these keys' quotas are spent: nothing more for them today. Returns
        when they reset. Without a quota of our own (limit 0) nothing is recorded: the provider's
        answer holds each message in turn."""
        at = now()
        reset = quota_reset(at)
        if self._redis is None or not keys:
            return reset
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in self._keys(keys, at):
                    pipe.set(key, self.limit, exat=int((reset + _QUOTA_KEY_MARGIN).timestamp()))
                await pipe.execute()
        except RedisError as exc:
            log.warning("%s quota: spent not recorded (Redis: %s)", self._family, type(exc).__name__)
        return reset

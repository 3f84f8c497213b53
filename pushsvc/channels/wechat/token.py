"""The Official Account's access token, shared by every worker through Redis.

The platform hands out one current token per account (a new one retires the old), valid for
`expires_in` seconds and with a daily quota of fetches, so workers must not each fetch their own.
The token is cached in Redis until shortly before it expires; when it is missing, the one
process holding a short Redis lock fetches it while the others wait for it to appear. A token
the platform refuses is dropped only if it is still the cached one: a worker holding an old
copy then picks up the newer token instead of fetching yet another.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import aiohttp
from redis.asyncio import Redis

from pushsvc import redis_keys
from pushsvc.channels.wechat import http

_POLL_SECONDS = 0.05
_REFRESH_MARGIN_SECONDS = 300  # "shortly before": or a tenth of expires_in, if that is shorter

# Delete KEYS[1] only if it still holds ARGV[1]: someone else's newer value is kept.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Fetch = Callable[[], Awaitable[tuple[str, int]]]


class TokenUnavailable(Exception):
    """No token could be had (the endpoint refused or failed, or the fetching worker took too
    long): the messages waiting for it are retried later."""


def cache_seconds(expires_in: int) -> float:
    return max(1.0, expires_in - min(_REFRESH_MARGIN_SECONDS, expires_in / 10))


class AccessTokens:
    """`AccessTokens(redis, account, fetch, fetch_timeout)`: `fetch()` asks the token endpoint and
    returns (token, expires_in) or raises TokenUnavailable; `account` (the appid) names the keys."""

    def __init__(self, redis: Redis, account: str, fetch: Fetch, fetch_timeout: float) -> None:
        self._redis = redis
        self._key = redis_keys.wechat_token(account)
        self._lock_key = redis_keys.wechat_token_lock(account)
        self._fetch = fetch
        # The lock outlives a fetch that hangs until its timeout; waiters give up a little later.
        self._lock_ms = int((fetch_timeout + 1) * 1000)
        self._wait_seconds = fetch_timeout + 2
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL)
        self._local: tuple[str, float] | None = None  # (token, monotonic expiry): no Redis trip per message
        self._guard = asyncio.Lock()  # one refresh at a time within this process

    def _cached(self) -> str | None:
        if self._local is not None and self._local[1] > time.monotonic():
            return self._local[0]
        return None

    async def get(self) -> str:
        token = self._cached()
        if token is not None:
            return token
        async with self._guard:
            return self._cached() or await self._shared()

    async def refresh(self, stale: str) -> str:
        """A token other than `stale`, which the platform just refused."""
        async with self._guard:
            token = self._cached()
            if token is not None and token != stale:
                return token  # another lane of this process has refreshed already
            self._local = None
            await self._delete_if_equal(keys=[self._key], args=[stale])
            return await self._shared()

    async def _from_redis(self) -> str | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            token, ttl_ms = await pipe.get(self._key).pttl(self._key).execute()
        if token is None:
            return None
        token = token.decode() if isinstance(token, bytes) else token
        self._local = (token, time.monotonic() + max(ttl_ms, 0) / 1000)
        return token

    async def _shared(self) -> str:
        deadline = time.monotonic() + self._wait_seconds
        while True:
            token = await self._from_redis()
            if token is not None:
                return token
            nonce = secrets.token_hex(8)
            if await self._redis.set(self._lock_key, nonce, nx=True, px=self._lock_ms):
                try:
                    # Look again under the lock: another worker may have fetched and released it
                    # between our first look and our taking it.
                    return await self._from_redis() or await self._fetch_and_share()
                finally:
                    await self._delete_if_equal(keys=[self._lock_key], args=[nonce])
            if time.monotonic() > deadline:
                raise TokenUnavailable("timed out waiting for another worker to fetch the access token")
            await asyncio.sleep(_POLL_SECONDS)

    async def _fetch_and_share(self) -> str:
        token, expires_in = await self._fetch()
        seconds = cache_seconds(expires_in)
        await self._redis.set(self._key, token, px=int(seconds * 1000))
        self._local = (token, time.monotonic() + seconds)
        return token


async def fetch_token(session: aiohttp.ClientSession, api: str, appid: str, secret: str) -> tuple[str, int]:
    """(token, expires_in) from the token endpoint under `api`, or TokenUnavailable."""
    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    try:
        reply = await http.call(session, "GET", f"{api}/cgi-bin/token", params=params)
    except http.Unavailable as exc:
        raise TokenUnavailable(f"token endpoint: {exc}") from None
    token, expires_in = reply.data.get("access_token"), reply.data.get("expires_in")
    if reply.errcode != 0 or not isinstance(token, str) or not token or not isinstance(expires_in, int):
        raise TokenUnavailable(f"token endpoint: {reply.reason}")
    return token, expires_in

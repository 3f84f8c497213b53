"""The shared pacing against a real Redis: the platform's 20 a minute per robot key, several
clients at once, and the caller that would rather not wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis

from pushsvc.ratelimit import ProviderPace, Rate, RateLimiter, Reservation
from pushsvc.redis_keys import rate_limits

PER_MINUTE = Rate(20, 60.0)
ROBOTS = rate_limits("robots")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def at_most_per_window(slots: list[float], rate: Rate) -> bool:
    """No window of `period` seconds holds more than `limit` slots."""
    slots = sorted(slots)
    return all(later - earlier >= rate.period - 0.01 for earlier, later in zip(slots, slots[rate.limit :]))


async def test_twenty_a_minute_then_each_waits_for_its_slot(redis: Redis) -> None:
    limiter = RateLimiter(redis, ROBOTS)
    slots: list[float] = []
    reservations = []
    for _ in range(45):
        asked = time.time()
        reservations.append(await limiter.reserve("robot-a", PER_MINUTE, max_wait=600))
        slots.append(asked + reservations[-1].wait)
    assert all(r.granted for r in reservations)
    waits = [r.wait for r in reservations]
    assert all(w < 1 for w in waits[:20])
    assert all(59 <= w <= 61 for w in waits[20:40])  # the 21st opens one minute after the first
    assert all(119 <= w <= 121 for w in waits[40:])
    assert at_most_per_window(slots, PER_MINUTE)


async def test_a_slot_too_far_off_is_not_taken(redis: Redis) -> None:
    limiter = RateLimiter(redis, ROBOTS)
    granted = [await limiter.reserve("robot-b", PER_MINUTE) for _ in range(20)]
    assert all(r.granted and r.wait < 1 for r in granted)
    refused = [await limiter.reserve("robot-b", PER_MINUTE, max_wait=30) for _ in range(5)]
    assert not any(r.granted for r in refused)
    assert all(59 <= r.wait <= 61 for r in refused)  # when the next slot opens
    assert await redis.llen(f"{ROBOTS}:robot-b") == 20  # refusals took nothing
    # Another key has its own pace.
    assert (await limiter.reserve("robot-c", PER_MINUTE)).granted
    # The slots expire with their window: no key is left behind for ever.
    assert 0 < await redis.pttl(f"{ROBOTS}:robot-b") <= 61_000


async def test_many_clients_at_once_share_one_limit(redis_url: str) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    try:
        limiters = [RateLimiter(c, ROBOTS) for c in clients]
        results = await asyncio.gather(
            *(limiters[i % 4].reserve("robot-d", PER_MINUTE, max_wait=0) for i in range(100))
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sum(r.granted for r in results) == 20


async def test_acquire_sleeps_until_the_slot(redis: Redis) -> None:
    limiter = RateLimiter(redis, rate_limits("t"))
    rate = Rate(3, 0.5)
    began = time.monotonic()
    for _ in range(4):
        assert (await limiter.acquire("k", rate, max_wait=5)).granted
    assert time.monotonic() - began >= 0.49  # the 4th came one window after the 1st


async def test_a_refused_pace_answers_the_rest_of_a_batch_without_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[float] = []
    reserve = RateLimiter.reserve

    async def counted(self: RateLimiter, key: str, rate: Rate, max_wait: float = 0.0) -> Reservation:
        asked.append(max_wait)
        return await reserve(self, key, rate, max_wait)

    monkeypatch.setattr(RateLimiter, "reserve", counted)
    pace = ProviderPace(redis_url, "gateway", per_second=2)
    await pace.start()
    try:
        assert [await pace.turn(max_wait=0.1) for _ in range(2)] == [None, None]
        refused = [await pace.turn(max_wait=0.1) for _ in range(5)]
        assert len(asked) == 3  # the first refusal asked Redis; the other four were answered from it
        assert all(r is not None for r in refused)
        assert max(refused) - min(refused) < timedelta(seconds=0.1)  # all told the same moment
        assert all(0.8 <= (r - datetime.now(timezone.utc)).total_seconds() <= 1.1 for r in refused)
        # A caller willing to wait that long still asks, and gets the slot.
        assert await pace.turn(max_wait=5) is None
        assert len(asked) == 4
    finally:
        await pace.close()


def test_rate_must_make_sense() -> None:
    with pytest.raises(ValueError):
        Rate(0, 60)
    with pytest.raises(ValueError):
        Rate(20, 0)

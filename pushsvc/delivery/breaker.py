"""A circuit breaker per provider, shared by every worker through Redis: an outage of hours holds
messages instead of spending their attempts on a provider that cannot take them.

A provider is what a channel speaks to: the SMTP relay, the SMS gateway, WeChat's template API,
WeChat's robot webhooks (`provider_of`). The send step hands each message over through `guard`:

- up: the channel is called as usual; then a hand-over that reached nobody of a provider's
  recipients and had a temporary failure among them (a `retry`: refused connections, timeouts,
  5xx, 4xx replies; or an `unknown`: no answer) counts one failure, and one that sent anything
  resets the count. A recipient's permanent failure and a `held` (quiet hours, a pace) count for
  nothing. PUSHSVC_BREAKER_FAILURES failures in a row make the provider `down` since that moment.
  Counted per hand-over, not per recipient: one timed-out request for 1,000 numbers is one
  failure, not a thousand.
- down: its recipients are not handed over; they come back `held` until the next probe (no
  attempt spent). Every PUSHSVC_BREAKER_PROBE_SECONDS one hand-over, whichever wins the probe key
  (SET NX), sends to its first recipient alone: sent, and the provider is up again and the rest go
  at once; a temporary failure, and it (as `held`: a probe spends no attempt either) and the rest
  wait for the next probe. A recipient that settles nothing (an unusable address) passes the
  probe to the next one. Messages held meanwhile come due at the next probe time; those that
  lose that probe to another hand-over wait one more interval, so recovery takes at most two.

The state is in Redis (`redis_keys.breaker`, read by `pushsvc.metrics.provider_states` for
/metrics, `pushsvc status` and the admin page). Redis away: every provider counts as up and the
ledger's attempts and backoff still bound the retries. "In a row" is approximate across workers:
a success seen while another worker counts a failure may let the count run on, never lose a send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.channels.base import Report
from pushsvc.core.clock import now
from pushsvc.core.figures import duration, error_code
from pushsvc.core.messages import Outcome, Recipient
from pushsvc.metrics import DOWN_SINCE, ERROR, FAILURES
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

# The channel's call for some recipients, telling each outcome to the Report as it comes, and
# returning them all (never raises: the send step turns exceptions into outcomes).
Call = Callable[[list[Recipient], Report], Awaitable[list[Outcome]]]
# A provider did not take a message for now, or did not answer.
FAULTS = frozenset({"retry", "unknown"})
_PROVIDERS = {"email": "smtp", "sms": "sms-gateway"}

# KEYS[1]: the probe key. ARGV[1]: ms until the next probe. -1: the caller won the probe; else the
# ms until the next one may start.
_PROBE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return -1
end
return redis.call('PTTL', KEYS[1])
"""


def provider_of(channel: str, recipient: Recipient) -> str:
    """Which provider a message to `recipient` on `channel` goes to (WeChat: the robot webhook wins,
    as in the channel)."""
    if channel == "wechat":
        return "wechat-robot" if recipient.wechat_webhook else "wechat-template"
    return _PROVIDERS.get(channel, channel)


@dataclass
class _Seen:
    """A provider as one hand-over found it."""

    failing: bool = False  # failures counted, or down
    next_probe: datetime | None = None  # down, and another holds the probe: hold until then
    probe: bool = False  # down, and this hand-over probes it


class Breaker:
    """`Breaker(redis, settings)`: cheap to make (one per hand-over); the state is all in Redis.
    `redis` None (services without Redis, as in the send step's unit tests): every provider is up."""

    def __init__(self, redis: Redis | None, settings: Settings) -> None:
        self._redis = redis
        self.settings = settings

    @property
    def redis(self) -> Redis:
        assert self._redis is not None
        return self._redis

    async def guard(self, channel: str, recipients: list[Recipient], report: Report, call: Call) -> list[Outcome]:
        """Hand `recipients` to `call` as their providers' breakers allow; one outcome each, also
        told to `report` (the held ones only in the list)."""
        if self._redis is None:
            return await call(recipients, report)
        groups: dict[str, list[Recipient]] = {}
        for r in recipients:
            groups.setdefault(provider_of(channel, r), []).append(r)
        seen = await self._look(groups)
        ready = [r for p, group in groups.items() if not (seen[p].probe or seen[p].next_probe) for r in group]
        outcomes = await call(ready, report) if ready else []
        await self._tell(groups, outcomes, seen)
        for p, s in seen.items():
            if s.probe:
                outcomes += await self._try(p, groups[p], report, call)
            elif s.next_probe:
                outcomes += _held(p, groups[p], s.next_probe)
        return outcomes

    async def _look(self, groups: Mapping[str, list[Recipient]]) -> dict[str, _Seen]:
        seen = {p: _Seen() for p in groups}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in groups:
                    pipe.hmget(redis_keys.breaker(p), [FAILURES, DOWN_SINCE])
                states = await pipe.execute()
            for p, (failures, since) in zip(groups, states):
                seen[p].failing = bool(failures or since)
                if since is None:
                    continue
                wait_ms = await self.redis.eval(_PROBE, 1, redis_keys.breaker_probe(p), self._probe_ms)
                if wait_ms < 0:
                    seen[p].probe = True
                else:
                    seen[p].next_probe = now() + timedelta(milliseconds=max(wait_ms, 1))
        except (RedisError, OSError) as exc:  # let them through: the ledger still bounds the retries
            log.warning("circuit breakers unavailable (Redis: %s): sending without them", type(exc).__name__)
            return {p: _Seen() for p in groups}
        return seen

    async def _tell(self, groups: Mapping[str, list[Recipient]], outcomes: Iterable[Outcome],
                    seen: Mapping[str, _Seen]) -> None:
        """Count each up provider's hand-over: a success resets it, a failure may open it."""
        by_id = {r.delivery_id: p for p, group in groups.items() for r in group}
        sent: set[str] = set()
        faults: dict[str, str] = {}
        for o in outcomes:
            p = by_id.get(o.delivery_id)
            if p is None:
                continue
            if o.status == "sent":
                sent.add(p)
            elif o.status in FAULTS:
                faults.setdefault(p, o.error or o.status)
        try:
            for p in sent:
                if seen[p].failing:
                    await self._close(p)
            for p, error in faults.items():
                if p not in sent:
                    await self._fail(p, error)
        except (RedisError, OSError) as exc:
            log.warning("circuit breakers not told (Redis: %s)", type(exc).__name__)

    async def _try(self, provider: str, group: list[Recipient], report: Report, call: Call) -> list[Outcome]:
        """The probe: one recipient at a time until one settles whether the provider is back. A
        probe that finds it still down spends no attempt either: its `retry` becomes `held`."""
        outcomes: list[Outcome] = []
        for i, r in enumerate(group):
            result = await call([r], lambda o: report(self._spared(o)))
            rest = group[i + 1:]
            if any(o.status == "sent" for o in result):
                await self._tell({provider: [r]}, result, {provider: _Seen(failing=True)})
                more = await call(rest, report) if rest else []
                await self._tell({provider: rest}, more, {provider: _Seen()})
                return outcomes + result + more
            outcomes += [self._spared(o) for o in result]
            fault = next((o for o in result if o.status in FAULTS), None)
            if fault is not None:
                return outcomes + _held(provider, rest, await self._still_down(provider, fault.error or fault.status))
        return outcomes  # nobody settled it: the probe key runs out and another hand-over tries

    def _spared(self, outcome: Outcome) -> Outcome:
        """A probe's `retry` as `held` until the next probe. An `unknown` stays: the provider may have
        taken that one, and only a receipt or a query may say so."""
        if outcome.status != "retry":
            return outcome
        return Outcome(outcome.delivery_id, "held", outcome.error, not_before=now() + timedelta(milliseconds=self._probe_ms))

    async def _fail(self, provider: str, error: str) -> None:
        key = redis_keys.breaker(provider)
        failures = await self.redis.hincrby(key, FAILURES, 1)
        if failures < self.settings.breaker_failures or not await self.redis.hsetnx(key, DOWN_SINCE, repr(time.time())):
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, ERROR, error_code(error) or "")
            pipe.set(redis_keys.breaker_probe(provider), "1", px=self._probe_ms)
            await pipe.execute()
        log.warning("%s is down: %d hand-overs in a row reached nobody (%s); its messages wait, and one is "
                    "tried every %g s", provider, failures, error_code(error), self.settings.breaker_probe_seconds)

    async def _still_down(self, provider: str, error: str) -> datetime:
        """A failed probe: the next one a whole interval from now. Redis away: the same, unrecorded."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(redis_keys.breaker(provider), ERROR, error_code(error) or "")
                pipe.set(redis_keys.breaker_probe(provider), "1", px=self._probe_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("circuit breaker of %s not told (Redis: %s)", provider, type(exc).__name__)
        log.info("%s is still down (%s)", provider, error_code(error))
        return now() + timedelta(milliseconds=self._probe_ms)

    async def _close(self, provider: str) -> None:
        key = redis_keys.breaker(provider)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, DOWN_SINCE)
            pipe.delete(key, redis_keys.breaker_probe(provider))
            since, _ = await pipe.execute()
        if since is not None:
            log.warning("%s is up again after %s down", provider, duration(time.time() - float(since)))

    @property
    def _probe_ms(self) -> int:
        return max(1, int(self.settings.breaker_probe_seconds * 1000))


def _held(provider: str, recipients: Iterable[Recipient], until: datetime) -> list[Outcome]:
    return [Outcome(r.delivery_id, "held", f"{provider} down", not_before=until) for r in recipients]

"""The service's numbers that outlive one process: counters kept in Redis, and what the queue and
the ledger hold right now. The API's /metrics (`pushsvc.api.metrics`) and `pushsvc status` read them.

Workers are many separate processes; their counters live in one Redis hash that any API process
can read at scrape time, so one scrape shows the whole service. A worker adds a batch's outcomes
in one pipelined round trip (one HINCRBY per kind, channel and outcome, never one per recipient).
Counting never fails a job: if Redis will not take the numbers, they are logged and dropped.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate

import sqlalchemy as sa
from arq.constants import default_queue_name, in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc import redis_keys
from pushsvc.channels.sms.providers import failover
from pushsvc.store.schema import deliveries, policies

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedCounter:
    """A Prometheus counter (shown as `<name>_total`) whose values are kept in Redis."""

    name: str
    help: str
    labels: tuple[str, ...]

    def field(self, values: tuple[str, ...]) -> str:
        return "|".join((self.name, *values))


DELIVERIES = SharedCounter("pushsvc_deliveries", "Delivery attempts by kind of message (policy, notice, digest, "
                           "case, alert, self_service), channel and outcome: sent, failed (for good), held (quiet "
                           "hours, a provider's pace)", ("kind", "channel", "outcome"))
RETRIES = SharedCounter("pushsvc_delivery_retries", "Delivery attempts that failed for now and were queued again",
                        ("channel",))
RECEIPTS = SharedCounter("pushsvc_receipts", "Receipts from providers by result: delivered, failed, unknown "
                         "(no delivery with that message id yet)", ("channel", "result"))
# Written by the SMS failover (pushsvc.channels.sms.providers.failover), once per provider request.
SMS_PROVIDER_MESSAGES = SharedCounter(failover.MESSAGES_COUNTER, "SMS numbers per provider: taken, or not_taken "
                                      "(refused, failed, or left for the next provider)", ("provider", "result"))
SMS_PROVIDER_REQUESTS = SharedCounter(failover.REQUESTS_COUNTER, "SMS provider requests by result: ok, slow, or "
                                      "error (refused for the provider's own reasons, unreachable, unanswered)",
                                      ("provider", "result"))
SMS_PROVIDER_MS = SharedCounter(failover.REQUEST_MS_COUNTER, "Time SMS provider requests took, in milliseconds "
                                "(divided by the requests: the mean time a provider takes a batch)", ("provider",))
COUNTERS = (DELIVERIES, RETRIES, RECEIPTS, SMS_PROVIDER_MESSAGES, SMS_PROVIDER_REQUESTS, SMS_PROVIDER_MS)

FANOUT = "pushsvc_fanout_seconds"
FANOUT_HELP = "Time one fan-out job run takes (a long fan-out continues in further runs)"
# A run stops after half a job timeout (60 s by default), so the top buckets are its slices.
FANOUT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


async def _add(redis: Redis, fields: Mapping[str, float]) -> None:
    """Add to the hash's fields in one round trip (ints exactly, floats as floats)."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for field, n in fields.items():
                if isinstance(n, int):
                    pipe.hincrby(redis_keys.METRICS, field, n)
                else:
                    pipe.hincrbyfloat(redis_keys.METRICS, field, n)
            await pipe.execute()
    except RedisError as exc:
        log.warning("metrics not recorded (Redis: %s): %s", type(exc).__name__, dict(fields))


_SAID = {"queued": "to retry"}


async def record_outcomes(redis: Redis, kind: str, outcomes: Iterable[tuple[str, str]]) -> None:
    """A round of sending's (channel, new status) pairs, one per message and recipient, of one
    kind of message (policy, notice, digest, case, alert, self_service): `queued` again is a
    retry, the others are outcomes."""
    counts = Counter(outcomes)
    for channel in sorted({channel for channel, _ in counts}):
        said = ", ".join(f"{n} {_SAID.get(s, s)}" for (ch, s), n in sorted(counts.items()) if ch == channel)
        log.info("%s on %s: %s", kind, channel, said)
    await _add(redis, {
        (RETRIES.field((channel,)) if status == "queued" else DELIVERIES.field((kind, channel, status))): n
        for (channel, status), n in counts.items()
    })


async def record_receipts(redis: Redis, channel: str, delivered: Iterable[bool], unknown: int = 0) -> None:
    """`delivered`: one flag per receipt for a known delivery; `unknown`: receipts for none (yet)."""
    counts = Counter("delivered" if ok else "failed" for ok in delivered) + Counter(unknown=unknown)
    await _add(redis, {RECEIPTS.field((channel, result)): n for result, n in counts.items()})


async def observe_fanout(redis: Redis, seconds: float) -> None:
    bucket = bisect.bisect_left(FANOUT_BUCKETS, seconds)  # len(FANOUT_BUCKETS): only in +Inf
    await _add(redis, {f"{FANOUT}|bucket|{bucket}": 1, f"{FANOUT}|sum": float(seconds)})


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count), +Inf last: the count
    sum: float


@dataclass(frozen=True)
class Shared:
    counters: dict[SharedCounter, dict[tuple[str, ...], int]]
    fanout: Histogram


async def read_shared(redis: Redis) -> Shared:
    raw = {k.decode(): v.decode() for k, v in (await redis.hgetall(redis_keys.METRICS)).items()}
    by_name = {c.name: c for c in COUNTERS}
    counters: dict[SharedCounter, dict[tuple[str, ...], int]] = {c: {} for c in COUNTERS}
    for field, value in raw.items():
        name, *values = field.split("|")
        # A field written with other labels (before the counter gained one) is left out, not mislabelled.
        if name in by_name and len(values) == len(by_name[name].labels):
            counters[by_name[name]][tuple(values)] = int(value)
    per_bucket = [int(raw.get(f"{FANOUT}|bucket|{i}", 0)) for i in range(len(FANOUT_BUCKETS) + 1)]
    bounds = [*FANOUT_BUCKETS, float("inf")]
    fanout = Histogram(list(zip(bounds, accumulate(per_bucket))), float(raw.get(f"{FANOUT}|sum", 0)))
    return Shared(counters, fanout)


# -- providers' circuit breakers (written by pushsvc.delivery.breaker) ---------------------------------

# Every provider a channel speaks to, named as the breakers name them.
PROVIDERS = ("smtp", "sms-gateway", "wechat-template", "wechat-robot")
# The fields of a breaker's hash (redis_keys.breaker).
FAILURES, DOWN_SINCE, ERROR = "failures", "down_since", "error"


@dataclass(frozen=True)
class ProviderState:
    """A provider as its breaker sees it: `down_since` None while it is up; `failures` hand-overs
    in a row reached nobody; `next_probe` when a hand-over may next try it (None: no probe pending)."""

    provider: str
    failures: int
    down_since: datetime | None
    error: str | None
    next_probe: datetime | None


async def provider_states(redis: Redis, providers: Iterable[str] = PROVIDERS) -> list[ProviderState]:
    """The providers' breakers, read in one round trip."""
    names = list(providers)
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(redis_keys.breaker(name)).pttl(redis_keys.breaker_probe(name))
        replies = await pipe.execute()
    at = time.time()
    states = []
    for i, name in enumerate(names):
        fields = {k.decode(): v.decode() for k, v in replies[2 * i].items()}
        probe_ms = replies[2 * i + 1]
        since = fields.get(DOWN_SINCE)
        states.append(ProviderState(
            name, int(fields.get(FAILURES, 0)), None if since is None else _utc(float(since)), fields.get(ERROR),
            _utc(at + probe_ms / 1000) if since is not None and probe_ms > 0 else None,
        ))
    return states


def _utc(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, timezone.utc)


@dataclass(frozen=True)
class QueueState:
    """arq's queue: `waiting` to start, `running` now, `scheduled` for later (deferred, retries)."""

    waiting: int
    running: int
    scheduled: int


async def queue_state(redis: Redis) -> QueueState:
    # A job stays in the queue's sorted set until it finishes; its score is when it may start.
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        total, scheduled = await pipe.zcard(default_queue_name).zcount(default_queue_name, now_ms + 1, "+inf").execute()
    # Running: marked in progress and still queued (a finished cron job keeps its mark for a while).
    marked = [key[len(in_progress_key_prefix):] async for key in
              redis.scan_iter(match=f"{in_progress_key_prefix}*", count=1000, _type="string")]
    running = sum(score is not None for score in await redis.zmscore(default_queue_name, marked)) if marked else 0
    return QueueState(waiting=max(0, total - scheduled - running), running=running, scheduled=scheduled)


# -- the ledger (read with indexes: status with updated_at, status with publish_at) -------------------

async def oldest_queued_age(conn: AsyncConnection, at: datetime) -> float | None:
    """Seconds since the longest-waiting `queued` delivery was queued (or last tried); None if none."""
    oldest = (await conn.execute(
        sa.select(sa.func.min(deliveries.c.updated_at)).where(deliveries.c.status == "queued")
    )).scalar_one_or_none()
    return None if oldest is None else max(0.0, (at - oldest).total_seconds())


async def policies_publishing(conn: AsyncConnection) -> int:
    return (await conn.execute(
        sa.select(sa.func.count()).select_from(policies).where(policies.c.status == "publishing")
    )).scalar_one()


async def deliveries_by_channel(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """channel -> status -> count over the whole ledger (a full scan: for `pushsvc status`, not scrapes)."""
    rows = await conn.execute(
        sa.select(deliveries.c.channel, deliveries.c.status, sa.func.count()).group_by(
            deliveries.c.channel, deliveries.c.status
        )
    )
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in rows:
        out.setdefault(channel, {})[status] = n
    return out

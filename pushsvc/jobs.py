"""Job names, ids and the wire format shared by the API (which enqueues) and workers (which run).

Jobs are serialised as JSON, not arq's default pickle: whoever can write to Redis must not be
able to run code in the workers. A job started (directly or not) by a request carries its id
(`request_id`, see pushsvc.logs), so the request's and the jobs' log lines can be joined.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable
from datetime import datetime
from typing import Any

from arq import ArqRedis

from pushsvc.logs import job_kwargs


def job_serializer(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def job_deserializer(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def fanout_job_id(policy_id: int, after: int = 0) -> str:
    return f"fanout:{policy_id}:{after}"


def deliver_job_id(policy_id: int, channel: str, lo: int, hi: int, notice: int = 0) -> str:
    """Notice 0 is the policy itself; a lifecycle notice's batches get ids of their own."""
    return f"deliver:{policy_id}:{channel}:{lo}-{hi}" + (f":n{notice}" if notice else "")


def notify_job_id(policy_id: int, notice: int) -> str:
    return f"notify:{policy_id}:{notice}"


async def enqueue_fanout(redis: ArqRedis, policy_id: int, after: int = 0, *, at: datetime | None = None,
                         job_id: str | None = None) -> None:
    await redis.enqueue_job(
        "fanout", policy_id, _job_id=job_id or fanout_job_id(policy_id, after), _defer_until=at, **job_kwargs()
    )


async def enqueue_deliver(redis: ArqRedis, policy_id: int, channel: str, lo: int, hi: int,
                          *, job_id: str | None = None, notice: int = 0) -> None:
    await redis.enqueue_job(
        "deliver", policy_id, channel, lo, hi, notice,
        _job_id=job_id or deliver_job_id(policy_id, channel, lo, hi, notice), **job_kwargs(),
    )


async def enqueue_deliver_ranges(redis: ArqRedis, rows: AsyncIterable[tuple[int, int, str, int]], size: int,
                                 tag: str) -> int:
    """Deliver jobs for ledger rows already written, as the fan-out cuts them: one per policy,
    notice, channel and run of at most `size` subscribers. `rows`: (policy, notice, channel,
    subscriber), in that order. The ids carry `tag` (when and why): a job of the same range kept
    from an earlier sending must not swallow this one. Returns how many jobs it enqueued."""
    enqueued = 0
    key: tuple[int, int, str] = (0, 0, "")
    sids: list[int] = []
    async for policy_id, notice, channel, sid in rows:
        if sids and (key != (policy_id, notice, channel) or len(sids) == size):
            await _enqueue_range(redis, key, sids, tag)
            enqueued, sids = enqueued + 1, []
        key = (policy_id, notice, channel)
        sids.append(sid)
    if sids:
        await _enqueue_range(redis, key, sids, tag)
        enqueued += 1
    return enqueued


async def _enqueue_range(redis: ArqRedis, key: tuple[int, int, str], sids: list[int], tag: str) -> None:
    policy_id, notice, channel = key
    lo, hi = sids[0], sids[-1]
    await enqueue_deliver(redis, policy_id, channel, lo, hi, notice=notice,
                          job_id=f"{deliver_job_id(policy_id, channel, lo, hi, notice)}:{tag}")


async def enqueue_case_send(redis: ArqRedis, case_id: int, delay: float) -> None:
    """A case's retry, `delay` seconds on (pushsvc.cases.dispatcher). The id carries the second it is
    due: an earlier retry's job, kept after it ran, must not swallow this one."""
    due = int(time.time() + delay)
    await redis.enqueue_job("case_send", case_id, _job_id=f"case:{case_id}:at{due}", _defer_by=delay, **job_kwargs())


async def enqueue_notify(redis: ArqRedis, policy_id: int, notice: int) -> None:
    """Hand a lifecycle notice's ledger rows to deliver jobs (pushsvc.policies.lifecycle)."""
    await redis.enqueue_job("notify", policy_id, notice, _job_id=notify_job_id(policy_id, notice), **job_kwargs())

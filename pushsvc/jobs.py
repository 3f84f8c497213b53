"""Job names, ids and the wire format shared by the API (which enqueues) and workers (which run).

Jobs are serialised as JSON, not arq's default pickle: whoever can write to Redis must not be
able to run code in the workers.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from arq import ArqRedis


def job_serializer(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def job_deserializer(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def fanout_job_id(policy_id: int, after: int = 0) -> str:
    return f"fanout:{policy_id}:{after}"


def deliver_job_id(policy_id: int, channel: str, lo: int, hi: int) -> str:
    return f"deliver:{policy_id}:{channel}:{lo}-{hi}"


async def enqueue_fanout(redis: ArqRedis, policy_id: int, after: int = 0, *, at: datetime | None = None,
                         job_id: str | None = None) -> None:
    await redis.enqueue_job(
        "fanout", policy_id, _job_id=job_id or fanout_job_id(policy_id, after), _defer_until=at
    )


async def enqueue_deliver(redis: ArqRedis, policy_id: int, channel: str, lo: int, hi: int,
                          *, job_id: str | None = None) -> None:
    await redis.enqueue_job(
        "deliver", policy_id, channel, lo, hi, _job_id=job_id or deliver_job_id(policy_id, channel, lo, hi)
    )

"""Trying a policy's temporary failures again, with a fresh set of attempts (permanent ones stay
failed): the rows requeued in the ledger, then handed to deliver jobs as the fan-out cuts them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from pushsvc.core.clock import now
from pushsvc.jobs import enqueue_deliver_ranges
from pushsvc.services import Services
from pushsvc.store.dead_letters import failed_count, requeue_temporary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeued:
    by_channel: dict[str, int]
    still_failed: int

    @property
    def total(self) -> int:
        return sum(self.by_channel.values())


async def retry_failed(svc: Services, policy_id: int) -> Requeued:
    at = now()
    async with svc.db.write() as conn:
        requeued = await requeue_temporary(conn, policy_id, at)
        left = await failed_count(conn, policy_id)
    try:
        await _enqueue(svc, policy_id, requeued, at)
    except Exception:
        # The rows are queued in the database: the sweeper enqueues them once Redis is back.
        log.warning("policy %s: %d deliveries requeued but not enqueued now", policy_id, len(requeued), exc_info=True)
    return Requeued(dict(Counter(channel for _, channel, _ in requeued)), left)


async def _enqueue(svc: Services, policy_id: int, requeued: list[tuple[int, str, int]], at: datetime) -> None:
    async def rows() -> AsyncIterator[tuple[int, int, str, int]]:
        for notice, channel, sid in requeued:  # sorted, as enqueue_deliver_ranges needs them
            yield policy_id, notice, channel, sid

    tag = f"retry{int(at.timestamp() * 1000)}"
    await enqueue_deliver_ranges(svc.redis, rows(), svc.settings.fanout_batch_size, tag)

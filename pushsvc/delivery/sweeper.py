"""The sweeper: the database is the truth, Redis only carries work. Anything the ledger says is
waiting but nobody is working on (Redis restarted, a worker died) is enqueued again."""

from __future__ import annotations

from datetime import timedelta

from pushsvc.core.clock import now
from pushsvc.delivery.deliver import lease_cutoff
from pushsvc.jobs import enqueue_deliver_ranges, enqueue_fanout, fanout_job_id
from pushsvc.services import Services
from pushsvc.store.deliveries import stale_work
from pushsvc.store.policies import due_scheduled, unfinished_fanouts


async def run_sweep(svc: Services) -> int:
    """Returns how many jobs it enqueued."""
    at = now()
    stale_before = at - timedelta(seconds=svc.settings.stale_after_seconds)
    # Job ids carry the sweep's minute: a job id kept from an earlier run must not swallow this one.
    tag = f"sweep{int(at.timestamp()) // 60}"
    enqueued = 0
    async with svc.db.read() as conn:
        for policy_id in await due_scheduled(conn, at):
            await enqueue_fanout(svc.redis, policy_id)
            enqueued += 1
        for policy_id in await unfinished_fanouts(conn, stale_before):
            await enqueue_fanout(svc.redis, policy_id, job_id=f"{fanout_job_id(policy_id)}:{tag}")
            enqueued += 1
        stale = stale_work(conn, stale_before, lease_cutoff(svc, stale_before))
        enqueued += await enqueue_deliver_ranges(svc.redis, stale, svc.settings.fanout_batch_size, tag)
    return enqueued

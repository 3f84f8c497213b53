"""Fan-out: stream a policy's matching subscribers, write their ledger rows a batch at a time,
and hand each batch to a deliver job per channel.

Resumable by construction: the policy's `fanout_cursor` (the last subscriber id whose rows are
written) is committed in the same transaction as those rows, so a fan-out run again starts after
it, and delivery rows are unique, so overlapping work inserts nothing twice. A run stops after a
time slice and enqueues its continuation, keeping every job short (arq re-runs a killed job only
after its timeout).
"""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from pushsvc.core.clock import now
from pushsvc.core.targeting import parse_targeting
from pushsvc.core.verification import ContactKeys
from pushsvc.jobs import enqueue_deliver, enqueue_fanout
from pushsvc.services import Services
from pushsvc.store.deliveries import insert_deliveries
from pushsvc.store.matching import matching_pairs
from pushsvc.store.policies import get_policy, set_status
from pushsvc.store.schema import policies
from pushsvc.store.suppressions import mark_suppressed

log = logging.getLogger(__name__)
IMMEDIATE = "immediate"
WRITE_SUBSCRIBERS = 10_000


@dataclass
class Batch:
    rows: list[tuple[int, str, str]] = field(default_factory=list)
    subscribers: int = 0

    @property
    def bounds(self) -> tuple[int, int]:
        return self.rows[0][0], self.rows[-1][0]


async def _flush(svc: Services, policy_id: int, batches: list[Batch], urgent: bool) -> int:
    """Write the batches in one transaction, then enqueue a deliver job per batch and channel (on
    the urgent lane for an urgent policy, which no subscriber waits for in a digest); returns the
    new cursor."""
    hi = batches[-1].bounds[1]
    at = now()
    rows = [
        {
            "policy_id": policy_id,
            "subscriber_id": sid,
            "channel": channel,
            # Digest subscribers wait in the ledger for their period's message, unless it is urgent.
            "status": "queued" if frequency == IMMEDIATE or urgent else "digest",
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        for batch in batches
        for sid, channel, frequency in batch.rows
    ]
    async with svc.db.write() as conn:
        await insert_deliveries(conn, rows)
        # Contacts on the suppression list are recorded `suppressed`, never sent.
        await mark_suppressed(conn, ContactKeys(svc.settings.secret_key), policy_id, batches[0].bounds[0], hi, at)
        await conn.execute(
            sa.update(policies)
            .where(policies.c.id == policy_id, policies.c.fanout_cursor < hi)
            .values(fanout_cursor=hi, matched=policies.c.matched + sum(b.subscribers for b in batches), updated_at=at)
        )
    for batch in batches:
        lo, batch_hi = batch.bounds
        for channel in sorted({channel for _, channel, frequency in batch.rows if frequency == IMMEDIATE or urgent}):
            await enqueue_deliver(svc.redis, policy_id, channel, lo, batch_hi, urgent=urgent)
    return hi


async def run_fanout(svc: Services, policy_id: int) -> None:
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
    # Published, or repealed before it was: nothing (more) to send.
    if policy is None or policy["status"] not in ("scheduled", "publishing"):
        return
    if policy["status"] == "scheduled":
        if policy["publish_at"] and policy["publish_at"] > now() + timedelta(seconds=1):
            return  # woken early (the sweeper, a restart): the deferred job comes at publish_at
        async with svc.db.write() as conn:
            if not await set_status(conn, policy_id, "publishing", expect="scheduled"):
                return  # repealed meanwhile
    urgent = policy["priority"] == "urgent"
    targeting, errors = parse_targeting(policy["targeting"], svc.catalogue)
    if targeting is None:
        # Only possible if audiences/ changed under a stored policy; say so loudly, send nothing.
        log.error("policy %s: stored targeting no longer valid: %s", policy_id, errors)
        return

    size = svc.settings.fanout_batch_size
    deadline = time.monotonic() + svc.settings.send_budget_seconds
    query = matching_pairs(targeting, policy["domain"], list(policy["channels"]), policy["fanout_cursor"])
    # Several deliver batches per ledger transaction: on SQLite each transaction waits its turn for
    # the write lock behind the deliver jobs' claims and outcomes, and with one per 1,000 rows that
    # waiting, not the writing, set the fan-out's pace (measured: 100,000 rows, 16 s against 4 s alone).
    per_write = max(1, WRITE_SUBSCRIBERS // size)
    pending: list[Batch] = []
    batch, last_sid, cursor, cut_short = Batch(), None, 0, False
    # Closed at once when cut short: the stream holds a connection (and on PostgreSQL a cursor).
    async with aclosing(svc.db.stream(query, max(1000, size * 3))) as partitions:
        async for partition in partitions:
            for sid, channel, frequency in partition:
                if sid != last_sid:
                    if batch.subscribers == size:
                        pending.append(batch)
                        batch = Batch()
                    if len(pending) == per_write:
                        cursor = await _flush(svc, policy_id, pending, urgent)
                        pending = []
                        if time.monotonic() > deadline:
                            cut_short = True
                            break
                    batch.subscribers += 1
                    last_sid = sid
                batch.rows.append((sid, channel, frequency))
            if cut_short:
                break
    if cut_short:
        # The continuation picks up after the cursor.
        await enqueue_fanout(svc.redis, policy_id, after=cursor, urgent=urgent)
        return
    if batch.rows:
        pending.append(batch)
    if pending:
        await _flush(svc, policy_id, pending, urgent)
    async with svc.db.write() as conn:
        await set_status(conn, policy_id, "published", published_at=now())

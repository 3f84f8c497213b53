"""A policy's life after publishing: revised, repealed, lapsed. Each is told to everyone who
received the policy, on the channel they received it, and to its followers it did not reach, on
their channels the policy is sent by (store/follows.py); to nobody else.

A notice is a number n > 0 in the ledger's `notice` column: its rows are made in one INSERT ...
SELECT from the policy's own rows (notice 0) that were sent or delivered, in the same transaction
as the change itself, so the database alone knows who is owed it (the sweeper re-enqueues it if
Redis loses the work). The `notify` job then hands the rows to ordinary deliver jobs, a batch of
subscribers per channel, which render the notice's kind (policy_revised, policy_repealed,
policy_lapsed) instead of the policy.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.core.quiet_hours import local_date
from pushsvc.jobs import enqueue_deliver, enqueue_notify
from pushsvc.policies.search import keep_indexed
from pushsvc.services import Services
from pushsvc.store.deliveries import cancel_unsent, notice_recipients
from pushsvc.store.deliveries import insert_notice as insert_recipients_notice
from pushsvc.store.follows import add_followers
from pushsvc.store.policies import due_lapses, repeal_policy, revise_policy, set_status

log = logging.getLogger(__name__)
# Named in a notice but not quoted: too long for "before → after".
LONG_FIELDS = frozenset({"summary", "body"})
# The department's own setting: kept as a revision, news to nobody.
NOT_NEWS = frozenset({"notify_on_lapse"})


async def insert_notice(conn: AsyncConnection, policy_id: int, kind: str, revision: int, details: dict[str, Any],
                        at: datetime) -> int | None:
    """The notice's rows: for everyone the policy reached, then for its followers it did not reach
    (pushsvc.policies.following), so that each is told once. None when that is nobody."""
    seq = await insert_recipients_notice(conn, policy_id, kind, revision, details, at)
    return await add_followers(conn, policy_id, seq, kind, revision, details, at)


def json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def told_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a revision notice says of a revision's changes ({field, before, after} each)."""
    return [
        {"field": c["field"]} if c["field"] in LONG_FIELDS else c
        for c in changes
        if c["field"] not in NOT_NEWS
    ]


async def revise(
    svc: Services, policy: dict[str, Any], values: dict[str, Any], changes: list[dict[str, Any]]
) -> bool:
    """Store `values` as the policy's next revision and tell its recipients `changes` (JSON values).
    False if the policy changed since `policy` was read: nothing is written then."""
    at = now()
    async with svc.db.write() as conn:
        if not await revise_policy(conn, policy, values, changes):
            return False
        await keep_indexed(svc, conn, policy["id"], at)
        told = told_changes(changes)
        seq = None
        if told:
            seq = await insert_notice(conn, policy["id"], "revised", policy["revision"] + 1, {"changes": told}, at)
    await _start(svc, policy["id"], seq)
    return True


async def repeal(svc: Services, policy: dict[str, Any], reason: str, repealed_on: date) -> bool:
    """False if the policy can no longer be repealed (repealed, lapsed or being sent meanwhile)."""
    at = now()
    async with svc.db.write() as conn:
        if not await repeal_policy(conn, policy["id"], reason, repealed_on):
            return False
        await keep_indexed(svc, conn, policy["id"], at)
        await cancel_unsent(conn, policy["id"], "policy repealed before it was sent", at)
        seq = await insert_notice(conn, policy["id"], "repealed", policy["revision"],
                                  {"reason": reason, "repealed_on": repealed_on.isoformat()}, at)
    await _start(svc, policy["id"], seq)
    return True


async def run_lapse(svc: Services, at: datetime | None = None) -> int:
    """The cron: published policies whose expires_on is over become `lapsed`, and their recipients
    are told unless the department turned that off. Returns how many lapsed. Safe to run twice or
    on two workers at once: only the run that moves a policy out of `published` tells anyone."""
    at = at or now()
    today = local_date(at)
    async with svc.db.read() as conn:
        due = await due_lapses(conn, today)
    lapsed = 0
    for policy in due:
        async with svc.db.write() as conn:
            if not await set_status(conn, policy["id"], "lapsed", expect="published"):
                continue
            await keep_indexed(svc, conn, policy["id"], at)
            await cancel_unsent(conn, policy["id"], "policy lapsed before it was sent", at)
            seq = None
            if policy["notify_on_lapse"]:
                seq = await insert_notice(conn, policy["id"], "lapsed", policy["revision"],
                                          {"expires_on": policy["expires_on"].isoformat()}, at)
        lapsed += 1
        await _start(svc, policy["id"], seq)
    return lapsed


async def _start(svc: Services, policy_id: int, seq: int | None) -> None:
    if seq is None:
        return  # it reached nobody (or there is nothing to tell): nothing is sent
    try:
        await enqueue_notify(svc.redis, policy_id, seq)
    except Exception:
        # The rows are queued in the database: the sweeper enqueues them once Redis is back.
        log.warning("policy %s: notice %s stored but not enqueued now", policy_id, seq, exc_info=True)


async def run_notify(svc: Services, policy_id: int, seq: int) -> int:
    """Enqueue a notice's deliver jobs: one per channel and batch of subscribers, as the fan-out
    makes them (deterministic ids, so running twice enqueues nothing new). Returns how many."""
    size = svc.settings.fanout_batch_size
    enqueued = 0
    batch: list[tuple[int, str]] = []
    subscribers = 0

    async def flush() -> int:
        lo, hi = batch[0][0], batch[-1][0]
        channels = sorted({channel for _, channel in batch})
        for channel in channels:
            await enqueue_deliver(svc.redis, policy_id, channel, lo, hi, notice=seq)
        return len(channels)

    async with svc.db.read() as conn:
        async for sid, channel in notice_recipients(conn, policy_id, seq):
            if not batch or sid != batch[-1][0]:
                if subscribers == size:
                    enqueued += await flush()
                    batch, subscribers = [], 0
                subscribers += 1
            batch.append((sid, channel))
    if batch:
        enqueued += await flush()
    return enqueued

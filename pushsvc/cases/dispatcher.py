"""Sending cases' notifications: in event order per channel, once, whichever worker runs.

The API stores an event and pushes its case's id onto a Redis list. Every worker runs a
dispatcher that takes up to a batch of ids at a time and sends them together: one transaction
claims the cases' leases, one read finds what is pending, the sends go out concurrently (each
case's in event order per channel) with their outcomes written as they come (the send step), and
one transaction releases the leases. A job per event cost more than the sending itself; a batch
costs a handful of statements for all.

A worker holding a case sends all of its due notifications, oldest event first; on each channel
it stops at the first one that has to wait (a temporary failure backing off), so a later event
never overtakes an earlier one. A notification that failed for good does not hold the channel up.
A worker that finds a case's lease taken leaves it: the holder looks for pending work again
*after* releasing, so an event stored after that look finds the lease free and is sent by whoever
pops its id. A retry waits in a deferred `case_send` job; the sweeper pushes any case whose due
work nobody touched (a lost push, a dead worker).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from pushsvc import redis_keys
from pushsvc.cases.messages import case_message
from pushsvc.core.clock import now
from pushsvc.core.messages import CaseMessage, Recipient
from pushsvc.delivery.send import Row, SendStep
from pushsvc.jobs import enqueue_case_send
from pushsvc.services import Services
from pushsvc.store.cases import (
    cases_with_department,
    claim_cases,
    next_pending,
    pending_notifications,
    release_cases,
    stale_cases,
    write_notification_outcomes,
)

log = logging.getLogger(__name__)


async def push_due(redis: Redis, case_ids: Sequence[int]) -> None:
    if case_ids:
        await redis.rpush(redis_keys.CASES_DUE, *case_ids)


async def pop_due(redis: Redis, batch: int, wait: float) -> list[int]:
    """Up to `batch` distinct case ids, waiting up to `wait` seconds for the first."""
    first = await redis.blpop([redis_keys.CASES_DUE], timeout=wait)
    if first is None:
        return []
    more = await redis.lpop(redis_keys.CASES_DUE, batch - 1) if batch > 1 else None
    return list(dict.fromkeys(int(x) for x in [first[1], *(more or [])]))


def lease_seconds(svc: Services) -> float:
    # Longer than a job may run: a lease outliving its job means the worker died.
    return svc.settings.job_timeout_seconds + 10


async def run_dispatcher(svc: Services, stop: asyncio.Event) -> None:
    """A worker's loop over the due list until `stop` is set; a batch begun is finished first."""
    while not stop.is_set():
        try:
            ids = await pop_due(svc.redis, svc.settings.case_batch_size, wait=1.0)
            if ids:
                await _hand_over(svc, await send_cases(svc, ids))
        except Exception:  # Redis or the database away: what was popped is found again by the sweeper
            log.exception("case dispatcher: a batch failed; trying again in a second")
            await asyncio.sleep(1.0)


async def _hand_over(svc: Services, waiting: dict[int, float]) -> None:
    """Cases left with work: due now (out of time) back on the list, a retry to a deferred job."""
    await push_due(svc.redis, [case_id for case_id, delay in waiting.items() if delay <= 0])
    for case_id, delay in waiting.items():
        if delay > 0:
            await enqueue_case_send(svc.redis, case_id, delay)


async def send_cases(svc: Services, case_ids: Sequence[int]) -> dict[int, float]:
    """Send what is due for the cases; returns, for each case this call held that still has work,
    seconds until it is due (0 when this call ran out of time with work due now). Cases another
    worker holds are left to it."""
    owner = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + svc.settings.send_budget_seconds
    ids = list(case_ids)
    waiting: dict[int, float] = {}
    while ids:
        at = now()
        async with svc.db.write() as conn:
            claimed = await claim_cases(conn, ids, owner, at, at + timedelta(seconds=lease_seconds(svc)))
        if not claimed:
            break
        step = SendStep(svc, "case", write_notification_outcomes, deadline)
        try:
            async with svc.db.read() as conn:  # the leases are ours: no need to hold the write lock to read
                pending = await pending_notifications(conn, claimed)
                cases = await cases_with_department(conn, {row["case_id"] for row in pending})
            await _send_cases(step, cases, pending, at, deadline)
        finally:
            # Recorded even when the job is being cancelled: a message sent but not recorded would
            # go out a second time (and after later ones).
            ids, later = await asyncio.shield(_finish(svc, claimed, owner, step))
        for case_id, due in later.items():
            waiting[case_id] = max(0.0, (due - now()).total_seconds())
        if loop.time() > deadline:
            waiting.update(dict.fromkeys(ids, 0.0))
            break
    return waiting


async def _finish(svc: Services, case_ids: list[int], owner: str,
                  step: SendStep) -> tuple[list[int], dict[int, datetime]]:
    """Record what is not recorded yet, release the leases, then look for work again (see the
    module doc). Outcomes first: a lease released before its case's outcomes are written would let
    another worker send them again."""
    await step.flush()
    async with svc.db.write() as conn:
        await release_cases(conn, case_ids, owner)
        found = await next_pending(conn, case_ids, now())
    await step.count()
    return found


async def _send_cases(step: SendStep, cases: dict[int, dict[str, Any]], pending: list[dict[str, Any]],
                      at: datetime, deadline: float) -> None:
    """Per case and channel, in event order; `step` keeps each outcome's ledger update as it comes."""
    lanes: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in pending:  # already in event order
        lanes.setdefault((row["case_id"], row["channel"]), []).append(row)
    messages: dict[tuple[int, int], CaseMessage] = {}
    loop = asyncio.get_running_loop()

    def message(case: dict[str, Any], row: dict[str, Any]) -> CaseMessage:
        key = (case["id"], row["event_seq"])
        if key not in messages:
            messages[key] = case_message(step.svc.settings.public_url, case, row)
        return messages[key]

    async def lane(case: dict[str, Any], channel_name: str, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            if row["next_attempt_at"] is not None and row["next_attempt_at"] > at:
                return  # this one waits, and so does every later one on this channel
            if loop.time() > deadline:
                return  # the next round goes on from here
            [result] = await step.send(channel_name, message(case, row), [_recipient(case, row["id"])],
                                       {row["id"]: (Row(row["id"], row["attempts"] + 1),)})
            if result.status not in ("sent", "failed"):
                return

    await asyncio.gather(*(lane(cases[case_id], channel, rows) for (case_id, channel), rows in lanes.items()))


def _recipient(case: dict[str, Any], notification_id: int) -> Recipient:
    # An applicant is not a subscriber: subscriber_id 0, the contacts are the case's own.
    return Recipient(delivery_id=notification_id, subscriber_id=0, name=case["applicant_name"],
                     locale=case["locale"], email=case["email"], phone=case["phone"],
                     wechat_openid=case["wechat_openid"])


async def run_case_sweep(svc: Services) -> int:
    """Put every case with due notifications nobody is working on back on the due list; returns how many."""
    at = now()
    before = at - timedelta(seconds=svc.settings.stale_after_seconds)
    async with svc.db.read() as conn:
        ids = await stale_cases(conn, before, at)
    await push_due(svc.redis, ids)
    return len(ids)

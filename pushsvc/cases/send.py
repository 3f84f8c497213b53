"""Sending a case's notifications: in event order per channel, once, whichever worker runs.

One worker at a time holds a case's lease (a row claim in the database) and sends all of its due
notifications, oldest event first; on each channel it stops at the first one that has to wait
(a temporary failure backing off), so a later event never overtakes an earlier one. A
notification that failed for good does not hold the channel up.

Every event enqueues its own job. A job that finds the lease taken ends at once: the holder looks
for pending work again *after* releasing, so an event stored after that look finds the lease free
and is sent by its own job. Nothing is left behind, nothing sent twice while leases hold.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from arq import ArqRedis

from pushsvc.cases.messages import CaseMessage, case_message
from pushsvc.channels.base import Outcome, Recipient
from pushsvc.core.rendering import RenderError
from pushsvc.core.retry import ledger_update
from pushsvc.services import Services
from pushsvc.store.cases import (
    case_with_department,
    claim_case,
    next_pending,
    pending_notifications,
    release_case,
    stale_cases,
    write_notification_outcomes,
)
from pushsvc.store.subscribers import now

log = logging.getLogger(__name__)
JOB = "case_send"


def case_job_id(case_id: int, tag: int | str) -> str:
    return f"case:{case_id}:{tag}"


async def enqueue_case(redis: ArqRedis, case_id: int, tag: int | str) -> None:
    """`tag`: the event's seq (so each event's job is its own), or a sweep's tag."""
    await redis.enqueue_job(JOB, case_id, _job_id=case_job_id(case_id, tag))


def lease_seconds(svc: Services) -> float:
    # Longer than a job may run: a lease outliving its job means the worker died.
    return svc.settings.job_timeout_seconds + 10


async def run_case_send(svc: Services, case_id: int) -> float | None:
    """Send what is due; returns seconds until a waiting notification (a retry) is due (0 when
    this job ran out of time with work left), or None when nothing waits or another worker
    holds the case."""
    owner = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    # Half the job's time: what is sent must still be recorded well before arq cancels the job.
    deadline = loop.time() + svc.settings.job_timeout_seconds * 0.5
    while True:
        at = now()
        async with svc.db.write() as conn:
            if not await claim_case(conn, case_id, owner, at, at + timedelta(seconds=lease_seconds(svc))):
                return None
        done: list[dict[str, Any]] = []
        try:
            async with svc.db.read() as conn:  # the lease is ours: no need to hold the write lock to read
                pending = await pending_notifications(conn, case_id)
                case = await case_with_department(conn, case_id) if pending else None
            if case is not None:
                await _send_in_order(svc, case, pending, at, deadline, done)
        finally:
            # Recorded even when the job is being cancelled: a message sent but not recorded would
            # go out a second time (and after later ones).
            due, earliest = await asyncio.shield(_finish(svc, case_id, owner, done))
        if not due:
            return None if earliest is None else max(0.0, (earliest - now()).total_seconds())
        if loop.time() > deadline:
            return 0.0


async def _finish(svc: Services, case_id: int, owner: str, updates: list[dict[str, Any]]) -> tuple[bool, datetime | None]:
    """Record outcomes and release the lease, then look for work again (see the module doc)."""
    async with svc.db.write() as conn:
        await write_notification_outcomes(conn, updates)
        await release_case(conn, case_id, owner)
        return await next_pending(conn, case_id, now())


async def _send_in_order(svc: Services, case: dict[str, Any], pending: list[dict[str, Any]], at: datetime,
                         deadline: float, done: list[dict[str, Any]]) -> None:
    """Send per channel in event order, appending each outcome's ledger update to `done` as it comes."""
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for row in pending:  # already in event order
        by_channel.setdefault(row["channel"], []).append(row)
    messages: dict[int, CaseMessage] = {}
    loop = asyncio.get_running_loop()
    s = svc.settings

    def message(row: dict[str, Any]) -> CaseMessage:
        if row["event_seq"] not in messages:
            messages[row["event_seq"]] = case_message(s.public_url, case, row)
        return messages[row["event_seq"]]

    async def lane(channel_name: str, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            if row["next_attempt_at"] is not None and row["next_attempt_at"] > at:
                return  # this one waits, and so does every later one on this channel
            if loop.time() > deadline:
                return  # the next job goes on from here
            outcome = await _send_one(svc, channel_name, message(row), _recipient(case, row["id"]))
            update = ledger_update(outcome, row["attempts"] + 1, s.max_attempts, now(), s.retry_base_seconds,
                                   s.retry_max_seconds)
            done.append(update)
            if update["new_status"] not in ("sent", "failed"):
                return

    await asyncio.gather(*(lane(name, rows) for name, rows in by_channel.items()))


def _recipient(case: dict[str, Any], notification_id: int) -> Recipient:
    # An applicant is not a subscriber: subscriber_id 0, the contacts are the case's own.
    return Recipient(delivery_id=notification_id, subscriber_id=0, name=case["applicant_name"],
                     locale=case["locale"], email=case["email"], phone=case["phone"],
                     wechat_openid=case["wechat_openid"])


async def _send_one(svc: Services, channel_name: str, message: CaseMessage, recipient: Recipient) -> Outcome:
    channel = svc.channels.get(channel_name)
    if channel is None:
        return Outcome(recipient.delivery_id, "failed", f"channel '{channel_name}' is not configured")
    try:
        return (await channel.send(message, [recipient]))[0]
    except RenderError as exc:  # our template is wrong: sending again cannot help
        log.error("case %s: %s", message.case_id, exc)
        return Outcome(recipient.delivery_id, "failed", str(exc)[:500])


async def run_case_sweep(svc: Services) -> int:
    """Enqueue a job for every case with due notifications nobody is working on; returns how many."""
    at = now()
    before = at - timedelta(seconds=svc.settings.stale_after_seconds)
    async with svc.db.read() as conn:
        ids = await stale_cases(conn, before, at)
    tag = f"sweep{int(at.timestamp()) // 60}"  # a kept result of an earlier sweep must not swallow this one
    for case_id in ids:
        await enqueue_case(svc.redis, case_id, tag)
    return len(ids)

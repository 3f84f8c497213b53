"""Deliver: send one batch of one policy on one channel, and write what happened in bulk."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from pushsvc.channels.base import Channel, Outcome, Recipient
from pushsvc.core.clock import now
from pushsvc.core.quiet_hours import parse_span, quiet_until
from pushsvc.core.retry import ledger_update
from pushsvc.metrics import record_outcomes
from pushsvc.policies.messages import load_message
from pushsvc.services import Services
from pushsvc.store.deliveries import (
    Claimed,
    claim,
    load_recipients,
    next_due,
    release,
    write_outcomes,
)


def hold_for_quiet_hours(
    svc: Services, channel: Channel, recipients: list[Recipient], at: datetime
) -> tuple[list[Recipient], list[Outcome]]:
    """Split off those in their quiet hours: they are `held` until it ends, then claimed again."""
    default = parse_span(svc.settings.quiet_hours)
    ready: list[Recipient] = []
    held: list[Outcome] = []
    for r in recipients:
        span = (r.quiet_start, r.quiet_end) if r.quiet_start is not None and r.quiet_end is not None else default
        until = quiet_until(at, *span) if channel.honours_quiet_hours(r) else None
        if until is None:
            ready.append(r)
        else:
            held.append(Outcome(r.delivery_id, "held", not_before=until))
    return ready, held


def lease_cutoff(svc: Services, at: datetime) -> datetime:
    """A row `sending` for longer than a job may run belongs to a worker that died."""
    return at - timedelta(seconds=svc.settings.job_timeout_seconds + 10)


async def run_deliver(
    svc: Services, policy_id: int, channel_name: str, lo: int, hi: int, notice: int = 0
) -> float | None:
    """Send a batch of the policy (notice 0) or of one of its lifecycle notices. Returns seconds
    until the batch's earliest waiting row (a retry, the end of quiet hours) is due, or None when
    nothing of the batch is left waiting."""
    at = now()
    async with svc.db.write() as conn:
        claimed = await claim(conn, policy_id, notice, channel_name, lo, hi, at, lease_cutoff(svc, at))
    if claimed:
        updates = await _send(svc, policy_id, notice, channel_name, claimed, at)
    async with svc.db.write() as conn:
        if claimed:
            await write_outcomes(conn, updates)
        due = await next_due(conn, policy_id, notice, channel_name, lo, hi)
    if claimed:
        await record_outcomes(svc.redis, channel_name, [u["new_status"] for u in updates])
    return None if due is None else max(0.0, (due - now()).total_seconds())


async def _send(
    svc: Services, policy_id: int, notice: int, channel_name: str, claimed: list[Claimed], at: datetime
) -> list[dict[str, Any]]:
    """Send the claimed rows; returns their ledger updates."""
    channel = svc.channels.get(channel_name)
    try:
        message = await load_message(svc, policy_id, notice, to_send=True)
        async with svc.db.read() as conn:
            recipients, gone = await load_recipients(conn, claimed, channel_name)
        outcomes: list[Outcome] = [Outcome(d, "failed", "unsubscribed before sending") for d in gone]
        if channel is None or message is None:
            reason = f"channel '{channel_name}' is not configured" if channel is None else "the policy is gone or no longer in force"
            outcomes += [Outcome(r.delivery_id, "failed", reason) for r in recipients]
        elif recipients:
            recipients, held = hold_for_quiet_hours(svc, channel, recipients, at)
            outcomes += held
            if recipients:
                outcomes += await channel.send(message, recipients)
    except asyncio.CancelledError:
        # Stopped before the outcomes were known: give the rows back rather than leave them `sending`.
        await asyncio.shield(_release(svc, [c.delivery_id for c in claimed]))
        raise
    attempts = {c.delivery_id: c.attempts for c in claimed}
    done = now()
    s = svc.settings
    return [
        ledger_update(o, attempts[o.delivery_id], s.max_attempts, done, s.retry_base_seconds, s.retry_max_seconds)
        for o in outcomes
    ]


async def _release(svc: Services, delivery_ids: list[int]) -> None:
    async with svc.db.write() as conn:
        await release(conn, delivery_ids, now())

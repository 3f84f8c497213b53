"""Deliver: send one batch of one policy on one channel, writing what happened as it comes (the
send step), and hand back to the queue what the job's send budget left unsent."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol

from pushsvc.core.clock import now
from pushsvc.core.messages import Message, Outcome
from pushsvc.delivery.fallback import fall_back
from pushsvc.delivery.send import Row, SendStep, left_before_sending
from pushsvc.services import Services
from pushsvc.store.deliveries import Claimed, claim, load_recipients, next_due, release, write_outcomes
from pushsvc.store.fallbacks import SendingTerms, sending_terms


class LoadMessage(Protocol):
    """Where a deliver job gets the message of a policy or of its n-th notice: the policies feature
    (`pushsvc.policies.messages.load_message`), handed in by the worker. With `to_send`, None when
    there is nothing to announce any more."""

    async def __call__(self, svc: Services, policy_id: int, notice: int = 0, *,
                       to_send: bool = False) -> Message | None: ...


def lease_cutoff(svc: Services, at: datetime) -> datetime:
    """A row `sending` for longer than a job may run belongs to a worker that died."""
    return at - timedelta(seconds=svc.settings.job_timeout_seconds + 10)


async def run_deliver(
    svc: Services, load: LoadMessage, policy_id: int, channel_name: str, lo: int, hi: int, notice: int = 0
) -> float | None:
    """Send a batch of the policy (notice 0) or of one of its lifecycle notices. Returns seconds
    until the batch's earliest waiting row (a retry, the end of quiet hours) is due, or None when
    nothing of the batch is left waiting."""
    at = now()
    step = SendStep(svc, "notice" if notice else "policy", write_outcomes)  # the budget starts now
    async with svc.db.write() as conn:
        claimed = await claim(conn, policy_id, notice, channel_name, lo, hi, at, lease_cutoff(svc, at))
    if claimed:
        try:
            terms, failed = await _send(svc, step, load, policy_id, notice, channel_name, claimed, at)
        finally:
            # However the send ended (done, the job cancelled, an error), what the channel answered
            # is written and the rows it never got go back to the queue.
            await asyncio.shield(_settle_up(svc, step, claimed))
        await fall_back(svc, terms, policy_id, notice, failed)
    async with svc.db.read() as conn:
        due = await next_due(conn, policy_id, notice, channel_name, lo, hi)
    await step.count()
    return None if due is None else max(0.0, (due - now()).total_seconds())


async def _send(
    svc: Services, step: SendStep, load: LoadMessage, policy_id: int, notice: int, channel_name: str,
    claimed: list[Claimed], at: datetime,
) -> tuple[SendingTerms, list[int]]:
    """Send the claimed rows (held in quiet hours from `at`, the claim's time, unless the policy is
    urgent) through `step`. Returns the policy's terms and the rows the channel failed for good
    (those a subscriber left or a policy no longer in force failed have nothing to fall back for)."""
    rows = {c.delivery_id: (Row(c.delivery_id, c.attempts + 1),) for c in claimed}
    message = await load(svc, policy_id, notice, to_send=True)
    async with svc.db.read() as conn:
        recipients, gone = await load_recipients(conn, claimed, channel_name)
        terms = await sending_terms(conn, policy_id)
    step.settle(channel_name, left_before_sending(gone), rows)
    if message is None:
        reason = "the policy is gone or no longer in force"
        step.settle(channel_name, [Outcome(r.delivery_id, "failed", reason) for r in recipients], rows)
    elif recipients:
        results = await step.send(channel_name, message, recipients, rows, at, quiet_hours=not terms.urgent)
        return terms, [r.outcome.delivery_id for r in results if r.status == "failed"]
    return terms, []


async def _settle_up(svc: Services, step: SendStep, claimed: list[Claimed]) -> None:
    """Write the outcomes kept, then release the claimed rows without one (never handed to the
    channel), their attempts as they were."""
    await step.flush()
    unsent = [c.delivery_id for c in claimed if c.delivery_id not in step.settled]
    if unsent:
        async with svc.db.write() as conn:
            await release(conn, unsent, now())

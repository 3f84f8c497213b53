"""Delivery receipts: what the providers tell of the messages they took, recorded in the ledgers
and counted."""

from __future__ import annotations

from collections.abc import Sequence

from pushsvc.channels.sms import SmsChannel, national_number, pending_ref
from pushsvc.core.clock import now
from pushsvc.metrics import record_receipts
from pushsvc.services import Services
from pushsvc.store.receipts import Receipt, apply_receipts


async def record(svc: Services, channel: str, receipts: Sequence[Receipt]) -> list[str]:
    """Move each receipt's messages out of `sent`; returns the message ids not known (yet): a
    receipt can beat the worker's write of the outcome that holds its id."""
    if not receipts:
        return []
    pending = _pending(svc, channel, receipts)
    async with svc.db.write() as conn:
        unknown = await apply_receipts(conn, channel, receipts, now(), pending)
    missing = set(unknown)
    known = [r.delivered for r in receipts if r.message_id not in missing]
    await record_receipts(svc.redis, channel, known, unknown=len(receipts) - len(known))
    return unknown


def _pending(svc: Services, channel: str, receipts: Sequence[Receipt]) -> dict[str, str]:
    """Row ref -> message id for SMS receipts naming their request and number: what settles rows
    left `unknown` when the gateway took a request whose reply never came."""
    if channel != SmsChannel.name:
        return {}
    secret = svc.settings.sms_secret
    return {pending_ref(secret, out_id, national_number(number)): r.message_id
            for r in receipts
            if (out_id := r.out_id) and (number := r.phone_number)}

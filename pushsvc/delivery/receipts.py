"""Delivery receipts: what the providers tell of the messages they took, recorded in the ledgers
and counted."""

from __future__ import annotations

from collections.abc import Sequence

from pushsvc.channels.sms import SmsChannel, national_number, pending_ref, provider_named
from pushsvc.core.clock import now
from pushsvc.delivery.bounces import suppress_invalid_numbers
from pushsvc.metrics import record_receipts
from pushsvc.services import Services
from pushsvc.store.receipts import Receipt, apply_receipts


async def record(svc: Services, channel: str, receipts: Sequence[Receipt], provider: str = "generic") -> list[str]:
    """Move each receipt's messages out of `sent`; returns the message ids not known (yet): a
    receipt can beat the worker's write of the outcome that holds its id. `provider`: the SMS
    provider whose push they came in."""
    if not receipts:
        return []
    pending = _pending(svc, channel, receipts, provider)
    async with svc.db.write() as conn:
        unknown = await apply_receipts(conn, channel, receipts, now(), pending)
        await suppress_invalid_numbers(conn, svc.settings.secret_key, channel, receipts, unknown)
    missing = set(unknown)
    known = [r.delivered for r in receipts if r.message_id not in missing]
    await record_receipts(svc.redis, channel, known, unknown=len(receipts) - len(known))
    return unknown


def _pending(svc: Services, channel: str, receipts: Sequence[Receipt], provider: str) -> dict[str, str]:
    """Row ref -> message id for SMS receipts naming their request and number: what settles rows
    left `unknown` when the provider took a request whose reply never came."""
    if channel != SmsChannel.name:
        return {}
    secret = provider_named(svc.settings, provider).mark_key
    return {pending_ref(secret, out_id, national_number(number)): r.message_id
            for r in receipts
            if (out_id := r.out_id) and (number := r.phone_number)}

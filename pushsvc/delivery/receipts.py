"""Delivery receipts: what the providers tell of the messages they took, recorded in the ledgers
and counted."""

from __future__ import annotations

from collections.abc import Sequence

from pushsvc.core.clock import now
from pushsvc.metrics import record_receipts
from pushsvc.services import Services
from pushsvc.store.receipts import Receipt, apply_receipts


async def record(svc: Services, channel: str, receipts: Sequence[Receipt]) -> list[str]:
    """Move each receipt's messages out of `sent`; returns the message ids not known (yet): a
    receipt can beat the worker's write of the outcome that holds its id."""
    if not receipts:
        return []
    async with svc.db.write() as conn:
        unknown = await apply_receipts(conn, channel, receipts, now())
    missing = set(unknown)
    known = [r.delivered for r in receipts if r.message_id not in missing]
    await record_receipts(svc.redis, channel, known, unknown=len(receipts) - len(known))
    return unknown

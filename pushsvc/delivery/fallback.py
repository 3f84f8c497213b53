"""The fallback channel: a subscriber's message that failed for good on a channel the policy names
a fallback for is tried on that channel (pushsvc.store.fallbacks says for whom), by deliver jobs on
the policy's lane, right after the failure is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from pushsvc.core.clock import now
from pushsvc.core.verification import ContactKeys
from pushsvc.jobs import enqueue_deliver_ranges
from pushsvc.services import Services
from pushsvc.store.fallbacks import SendingTerms, insert_fallbacks
from pushsvc.store.suppressions import mark_suppressed


async def _each(rows: Sequence[tuple[int, int, str, int]]) -> AsyncIterator[tuple[int, int, str, int]]:
    for row in rows:
        yield row


async def fall_back(svc: Services, terms: SendingTerms, policy_id: int, notice: int, failed: Sequence[int]) -> int:
    """Fallback rows for the `failed` rows (written `failed` already) and their deliver jobs;
    returns how many rows wait on a fallback channel. The rows are committed before the jobs are
    enqueued: should Redis be away, the sweeper finds them queued."""
    if not failed or not terms.fallback:
        return 0
    async with svc.db.write() as conn:
        rows = await insert_fallbacks(conn, policy_id, notice, failed, terms.fallback, now())
        if rows and notice == 0:
            # A fallback contact on the suppression list is recorded `suppressed`, as at fan-out.
            sids = [sid for *_, sid in rows]
            await mark_suppressed(conn, ContactKeys(svc.settings.secret_key), policy_id, min(sids), max(sids), now())
    if rows:
        await enqueue_deliver_ranges(svc.redis, _each(rows), svc.settings.fanout_batch_size, f"fallback{min(failed)}",
                                     urgent=terms.urgent)
    return len(rows)

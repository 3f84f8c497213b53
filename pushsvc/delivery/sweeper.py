"""The sweeper: the database is the truth, Redis only carries work. Anything the ledger says is
waiting but nobody is working on (Redis restarted, a worker died) is enqueued again, and rows left
`unknown` (a provider that may have taken them did not say) are asked after again."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from pushsvc.channels.sms import SmsChannel, national_number
from pushsvc.core.clock import now
from pushsvc.core.messages import UNKNOWN_REF_SEPARATOR, Outcome
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.retry import ledger_update
from pushsvc.delivery import receipts
from pushsvc.delivery.deliver import lease_cutoff
from pushsvc.jobs import enqueue_deliver_ranges, enqueue_fanout, fanout_job_id
from pushsvc.services import Services
from pushsvc.store.deliveries import stale_work
from pushsvc.store.policies import due_scheduled, unfinished_fanouts
from pushsvc.store.receipts import (
    Silent,
    Unknown,
    asked_about,
    settle_unknown,
    silent_rows,
    unknown_numbers,
    unknown_rows,
)

log = logging.getLogger(__name__)

_UNKNOWN_ROWS = 5000  # per ledger and sweep: a handful of provider requests
# SMS rows without a receipt asked about per sweep: Aliyun and Tencent are asked a number at a time.
_SILENT_ROWS = 200
_PROVIDERS_KEEP = timedelta(days=3)  # how far back the providers' lookups reach


async def run_sweep(svc: Services) -> int:
    """Returns how many jobs it enqueued."""
    at = now()
    stale_before = at - timedelta(seconds=svc.settings.stale_after_seconds)
    # Job ids carry the sweep's minute: a job id kept from an earlier run must not swallow this one.
    tag = f"sweep{int(at.timestamp()) // 60}"
    enqueued = 0
    async with svc.db.read() as conn:
        for policy_id in await due_scheduled(conn, at):
            await enqueue_fanout(svc.redis, policy_id)
            enqueued += 1
        for policy_id in await unfinished_fanouts(conn, stale_before):
            await enqueue_fanout(svc.redis, policy_id, job_id=f"{fanout_job_id(policy_id)}:{tag}")
            enqueued += 1
        stale = stale_work(conn, stale_before, lease_cutoff(svc, stale_before))
        enqueued += await enqueue_deliver_ranges(svc.redis, stale, svc.settings.fanout_batch_size, tag)
    await settle_unknowns(svc, stale_before)
    await settle_silent(svc, at)
    return enqueued


async def settle_unknowns(svc: Services, before: datetime) -> int:
    """Ask the providers about requests whose rows are `unknown` since before `before` (receipts
    usually settle them first): taken rows become what the provider says (sent, failed), rows it
    did not take are queued again (an attempt spent), and while it cannot tell they stay. Returns
    how many rows were settled."""
    async with svc.db.read() as conn:
        rows = await unknown_rows(conn, before, _UNKNOWN_ROWS)
    requests: defaultdict[tuple[str, str, str], list[Unknown]] = defaultdict(list)
    for row in rows:
        requests[(row.ledger, row.channel, row.ref.split(UNKNOWN_REF_SEPARATOR, 1)[0])].append(row)
    s, settled = svc.settings, 0
    for (ledger, channel_name, request), waiting in requests.items():
        channel = svc.channels.get(channel_name)
        if isinstance(channel, SmsChannel):  # Aliyun and Tencent look a request up by its numbers
            async with svc.db.read() as conn:
                phones = await unknown_numbers(conn, ledger, [row.id for row in waiting])
            answer = await channel.resolve(request, [national_number(p) for p in phones.values()])
        else:
            answer = None if channel is None else await channel.resolve(request)
        if answer is None:
            continue
        at = now()
        updates = [
            ledger_update(_outcome(row, answer.get(row.ref)), row.attempts, s.max_attempts, at,
                          s.retry_base_seconds, s.retry_max_seconds)
            for row in waiting
        ]
        async with svc.db.write() as conn:
            await settle_unknown(conn, ledger, updates)
        settled += len(updates)
        log.info("settled %d %s rows of request %s by asking the provider", len(updates), channel_name, request)
    return settled


async def settle_silent(svc: Services, at: datetime) -> int:
    """Ask Aliyun and Tencent about SMS rows still `sent` PUSHSVC_SMS_RECEIPT_WAIT_SECONDS after they
    went out (the pushed receipt was lost): what they report is recorded as a receipt; rows they
    cannot tell of yet are asked about again after as long. Returns how many rows were settled."""
    channel = svc.channels.get(SmsChannel.name)
    if not isinstance(channel, SmsChannel) or not (providers := channel.reporting_providers()):
        return 0
    before = at - timedelta(seconds=svc.settings.sms_receipt_wait_seconds)
    async with svc.db.read() as conn:
        rows = await silent_rows(conn, providers, before, at - _PROVIDERS_KEEP, _SILENT_ROWS)
    by_provider: defaultdict[str, list[Silent]] = defaultdict(list)
    for row in rows:
        by_provider[row.provider].append(row)
    settled = 0
    for provider, group in by_provider.items():
        told = await channel.reports(provider, [(r.ref, national_number(r.phone), r.sent_at.astimezone(LOCAL_ZONE).date())
                                                for r in group])
        if told is None:
            continue
        if told:
            await receipts.record(svc, SmsChannel.name, told, provider)
        async with svc.db.write() as conn:
            await asked_about(conn, [r.id for r in group], now())
        settled += len(told)
        log.info("asked %s about %d SMS without a receipt: %d settled", provider, len(group), len(told))
    return settled


def _outcome(row: Unknown, told: Outcome | None) -> Outcome:
    if told is None:
        return Outcome(row.id, "retry", "the provider did not take the request")
    return Outcome(row.id, told.status, told.error, told.provider_ref, told.not_before, told.provider)

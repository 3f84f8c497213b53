"""Digests: subscribers on a daily or weekly frequency get the policies that matched them in one
message per channel, at `PUSHSVC_DIGEST_TIME` local time (weekly ones on `PUSHSVC_DIGEST_WEEKDAY`).

The fan-out writes their ledger rows with the status `digest` (which no deliver job claims) and no
next_attempt_at, and they wait there. The `digest` cron runs every few minutes; once the day's
digest time has passed, it takes, per subscriber and channel, the rows waiting since before local
midnight, moves them to `sending` (a claim: another run finds them taken), sends one message
listing those policies, and writes every row's outcome (a sent digest's provider ref on each). A
policy so reaches a subscriber at once or in a digest, never both: it has one ledger row per
subscriber and channel. A temporary failure puts the rows back to `digest` with a next_attempt_at
from the ordinary backoff (or a provider's rate window): runs take them only once it has come.

Why a run every few minutes rather than one at the digest time: SMS and WeChat digests wait for
the end of the subscriber's quiet hours, and a temporary failure is tried again after its backoff,
and both only need a later run to find the rows still waiting. Runs are idempotent (the claim)
and one at a time (a Redis lock), so two workers or a repeated cron send nothing twice. A run
killed while sending leaves its rows `sending`: the sweeper then hands them to deliver jobs, one
message each.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pushsvc.channels.base import Outcome, Recipient
from pushsvc.core.clock import now
from pushsvc.core.quiet_hours import LOCAL_ZONE, local_date, parse_span
from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.core.retry import ledger_update
from pushsvc.core.tokens import TokenSigner
from pushsvc.delivery.deliver import hold_for_quiet_hours
from pushsvc.policies.messages import page_url, policy_path, short_url
from pushsvc.services import Services
from pushsvc.store.deliveries import (
    Claimed,
    Waiting,
    claim_for_digest,
    digest_subscribers,
    load_recipients,
    waiting_for_digest,
    write_outcomes,
)
from pushsvc.store.digests import insert_digest
from pushsvc.store.policies import listing
from pushsvc.store.short_links import short_code

log = logging.getLogger(__name__)
DIGEST_PURPOSE = "digest"
BATCH_SUBSCRIBERS = 200  # per claim, send and write round: bounds the IN lists and the gather
LOCK_KEY = "pushsvc:digest:lock"
# The card heading of a WeChat news message, per locale (the templates fall back to zh-CN).
TITLES = {
    "zh-CN": {"daily": "每日政策摘要", "weekly": "每周政策摘要"},
    "zh-HK": {"daily": "每日政策摘要", "weekly": "每週政策摘要"},
    "en": {"daily": "Daily policy digest", "weekly": "Weekly policy digest"},
}


@dataclass(frozen=True)
class DigestMessage:
    """One digest for the subscribers whose lists are the same, in one locale (its `title`)."""

    digest_id: int
    title: str
    period: str  # daily | weekly
    period_start: date
    period_end: date
    policies: tuple[dict[str, Any], ...]  # {title, department, doc_number, page_url, short_url}
    digest_url: str
    short_url: str
    kind: str = "digest"
    version: str = "1"  # a digest never changes: its key alone names the content

    @property
    def key(self) -> str:
        return f"digest:{self.digest_id}"

    @property
    def qr_url(self) -> str:
        return f"{self.digest_url}/qr.png"

    @property
    def to_subscriber(self) -> bool:
        return True


# -- when -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    day: date  # the run's local date
    frequencies: tuple[str, ...]  # whose waiting rows are due
    before: datetime  # rows waiting since before this (the day's local midnight, UTC) are due


def due_run(at: datetime, digest_time: str, weekday: int) -> Run | None:
    """What a run at `at` sends, or None before the day's digest time. Rows of subscribers who
    switched to `immediate` meanwhile go out with the daily ones rather than wait forever."""
    local = at.astimezone(LOCAL_ZONE)
    start, _ = parse_span(f"{digest_time}-{digest_time}")
    if local.hour * 60 + local.minute < start:
        return None
    weekly = ("weekly",) if local.isoweekday() == weekday else ()
    midnight = datetime.combine(local.date(), time(0), LOCAL_ZONE)
    return Run(local.date(), ("immediate", "daily", *weekly), midnight.astimezone(timezone.utc))


def period_of(frequency: str, day: date, earliest: date) -> tuple[str, date, date]:
    """(period, start, end) a subscriber's digest on `day` covers; it starts earlier when it carries
    rows older than its period (a run missed, a frequency changed)."""
    period = "weekly" if frequency == "weekly" else "daily"
    end = day - timedelta(days=1)
    start = day - timedelta(days=7) if period == "weekly" else end
    return period, min(start, earliest), end


# -- the page's token -------------------------------------------------------------------------------


def digest_token(signer: TokenSigner, digest_id: int) -> str:
    """The token of /d/{token}: a digest's list is public information, but its id is not to be counted."""
    return signer.sign(DIGEST_PURPOSE, {"d": digest_id})


def digest_path(token: str) -> str:
    return f"/d/{token}"


# -- the run ----------------------------------------------------------------------------------------


async def run_digest(svc: Services, at: datetime | None = None) -> int:
    """The cron. Returns how many digest messages it sent."""
    at = at or now()
    run = due_run(at, svc.settings.digest_time, svc.settings.digest_weekday)
    if run is None:
        return 0
    owner = secrets.token_hex(8)
    if not await svc.redis.set(LOCK_KEY, owner, nx=True, ex=svc.settings.job_timeout_seconds):
        return 0  # another worker's run is at it
    try:
        sent, after = 0, 0
        while True:
            async with svc.db.read() as conn:
                sids = await digest_subscribers(conn, run.frequencies, run.before, at, after, BATCH_SUBSCRIBERS)
            if not sids:
                return sent
            after = sids[-1]
            sent += await _batch(svc, run, sids[0], sids[-1], at)
    finally:
        if await svc.redis.get(LOCK_KEY) == owner.encode():
            await svc.redis.delete(LOCK_KEY)


@dataclass
class _Group:
    """One subscriber's waiting rows on one channel: one digest message."""

    rows: list[Waiting]
    recipient: Recipient | None = None

    @property
    def first(self) -> Waiting:
        return self.rows[0]


async def _batch(svc: Services, run: Run, lo: int, hi: int, at: datetime) -> int:
    async with svc.db.read() as conn:
        waiting = await waiting_for_digest(conn, run.frequencies, run.before, at, lo, hi)
        groups: dict[tuple[int, str], _Group] = {}
        for row in waiting:
            groups.setdefault((row.subscriber_id, row.channel), _Group([])).rows.append(row)
        outcomes: list[Outcome] = []
        for channel_name in sorted({ch for _, ch in groups}):
            mine = [g for (_, ch), g in groups.items() if ch == channel_name]
            representatives = [Claimed(g.first.delivery_id, g.first.subscriber_id, g.first.attempts) for g in mine]
            recipients, gone = await load_recipients(conn, representatives, channel_name)
            outcomes += [Outcome(d, "failed", "unsubscribed before sending") for d in gone]
            channel = svc.channels.get(channel_name)
            if channel is None:
                outcomes += [Outcome(r.delivery_id, "failed", f"channel '{channel_name}' is not configured")
                             for r in recipients]
                continue
            # In their quiet hours: left waiting, untouched, for a run after it ends.
            ready, _ = hold_for_quiet_hours(svc, channel, recipients, at)
            for r in ready:
                groups[(r.subscriber_id, channel_name)].recipient = r
    by_first = {g.first.delivery_id: g for g in groups.values()}
    decided = {o.delivery_id for o in outcomes}
    wanted = [row.delivery_id for g in groups.values() if g.recipient or g.first.delivery_id in decided
              for row in g.rows]
    if not wanted:
        return 0
    async with svc.db.write() as conn:
        taken = await claim_for_digest(conn, wanted, at)
    for g in groups.values():  # another run may have taken some rows first: they are its to send
        g.rows = [row for row in g.rows if row.delivery_id in taken]
    sending = [g for g in groups.values() if g.recipient and g.rows]
    messages = await _messages(svc, run, sending)
    results = await asyncio.gather(
        *(svc.channels[channel].send(message, recipients) for channel, message, recipients in messages),
        return_exceptions=True,
    )
    sent = 0
    for (channel, message, recipients), result in zip(messages, results):
        if isinstance(result, BaseException):  # a template that cannot render it, say: try again next run
            log.error("digest %s on %s could not be sent: %r", message.digest_id, channel, result)
            result = [Outcome(r.delivery_id, "retry", f"{type(result).__name__}: {result}") for r in recipients]
        outcomes += result
        sent += sum(1 for o in result if o.status == "sent")
    updates = [u for o in outcomes if by_first[o.delivery_id].rows
               for u in _updates(svc, o, by_first[o.delivery_id].rows, now())]
    async with svc.db.write() as conn:
        await write_outcomes(conn, updates)
    return sent


async def _messages(
    svc: Services, run: Run, sending: list[_Group]
) -> list[tuple[str, DigestMessage, list[Recipient]]]:
    """(channel, message, its recipients): one digest row (and page) per distinct list of the
    batch, one message per digest, channel and locale."""
    public = svc.settings.public_url
    policy_ids = sorted({row.policy_id for g in sending for row in g.rows})
    lists: dict[tuple[str, date, date, tuple[int, ...]], list[_Group]] = defaultdict(list)
    for g in sending:
        earliest = local_date(min(row.created_at for row in g.rows))
        period = period_of(g.first.frequency, run.day, earliest)
        lists[(*period, tuple(sorted({row.policy_id for row in g.rows})))].append(g)
    async with svc.db.write() as conn:
        listed = await listing(conn, {pid: policy_path(pid) for pid in policy_ids})
        pages: dict[tuple[str, date, date, tuple[int, ...]], tuple[int, str, str]] = {}
        for key in lists:
            digest_id = await insert_digest(conn, key[0], key[1], key[2], list(key[3]))
            path = digest_path(digest_token(svc.signer, digest_id))
            pages[key] = (digest_id, public + path, short_url(public, await short_code(conn, path)))
    out: dict[tuple[str, int, str], tuple[DigestMessage, list[Recipient]]] = {}
    for key, members in lists.items():
        period, start, end, ids = key
        digest_id, url, short = pages[key]
        entries = tuple(
            {"title": p["title"], "department": p["department"], "doc_number": p["doc_number"],
             "page_url": page_url(public, pid), "short_url": short_url(public, p["code"])}
            for pid in ids if (p := listed.get(pid))
        )
        for g in members:
            assert g.recipient is not None
            locale = g.recipient.locale if g.recipient.locale in TITLES else DEFAULT_LOCALE
            message, recipients = out.setdefault(
                (g.first.channel, digest_id, locale),
                (DigestMessage(digest_id, TITLES[locale][period], period, start, end, entries, url, short), []),
            )
            recipients.append(g.recipient)
    return [(channel, message, recipients) for (channel, _, _), (message, recipients) in out.items()]


def _updates(svc: Services, outcome: Outcome, rows: list[Waiting], at: datetime) -> list[dict[str, Any]]:
    """The digest's outcome on each of its rows. Not sent yet (a temporary failure, a rate window):
    waiting for a digest again, due after the backoff (or the window), until the attempts run out."""
    s = svc.settings
    updates = []
    for row in rows:
        own = Outcome(row.delivery_id, outcome.status, outcome.error, outcome.provider_ref, outcome.not_before)
        update = ledger_update(own, row.attempts + 1, s.max_attempts, at, s.retry_base_seconds, s.retry_max_seconds)
        if update["new_status"] in ("queued", "held"):
            update["new_status"] = "digest"  # with its next_attempt_at: not a deliver job's to send
        updates.append(update)
    return updates

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
sends only within its job's send budget (the send step's deadline): batches after it wait for the
next run, and a digest whose turn came too late goes back to `digest`, no attempt counted.
Outcomes are written as they come; a run killed while sending leaves only the rows of the last
moment `sending`: the sweeper then hands them to deliver jobs, one message each.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc import redis_keys
from pushsvc.channels.base import send_deadline
from pushsvc.core.clock import now
from pushsvc.core.links import SHORT_VIAS, ShortLinks, page_url, policy_path, short_url, tagged
from pushsvc.core.messages import DigestMessage, Recipient
from pushsvc.core.models import Locale
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import LOCAL_ZONE, local_date, parse_span
from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.core.tokens import TokenSigner
from pushsvc.delivery.send import Row, SendStep, left_before_sending, quiet_hours_end
from pushsvc.i18n import words
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
# The card heading of a WeChat news message (msgids, in the subscriber's locale; zh-CN for a
# locale the service does not know, as the templates fall back to).
TITLES = {"daily": N_("Daily policy digest"), "weekly": N_("Weekly policy digest")}


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
    if not await svc.redis.set(redis_keys.DIGEST_LOCK, owner, nx=True, ex=svc.settings.job_timeout_seconds):
        return 0  # another worker's run is at it
    try:
        sent, after = 0, 0
        deadline = send_deadline(svc.settings)
        while asyncio.get_running_loop().time() < deadline:  # the rest waits for the next run
            async with svc.db.read() as conn:
                sids = await digest_subscribers(conn, run.frequencies, run.before, at, after, BATCH_SUBSCRIBERS)
            if not sids:
                break
            after = sids[-1]
            sent += await _batch(svc, run, sids[0], sids[-1], at, deadline)
        return sent
    finally:
        if await svc.redis.get(redis_keys.DIGEST_LOCK) == owner.encode():
            await svc.redis.delete(redis_keys.DIGEST_LOCK)


@dataclass
class _Group:
    """One subscriber's waiting rows on one channel: one digest message."""

    rows: list[Waiting]
    recipient: Recipient | None = None

    @property
    def first(self) -> Waiting:
        return self.rows[0]


async def _batch(svc: Services, run: Run, lo: int, hi: int, at: datetime, deadline: float) -> int:
    default_quiet = parse_span(svc.settings.quiet_hours)
    gone: dict[str, list[int]] = {}
    async with svc.db.read() as conn:
        waiting = await waiting_for_digest(conn, run.frequencies, run.before, at, lo, hi)
        groups: dict[tuple[int, str], _Group] = {}
        for row in waiting:
            groups.setdefault((row.subscriber_id, row.channel), _Group([])).rows.append(row)
        for channel_name in sorted({ch for _, ch in groups}):
            mine = [g for (_, ch), g in groups.items() if ch == channel_name]
            representatives = [Claimed(g.first.delivery_id, g.first.subscriber_id, g.first.attempts) for g in mine]
            recipients, gone[channel_name] = await load_recipients(conn, representatives, channel_name)
            channel = svc.channels.get(channel_name)  # None: the send step fails them
            for r in recipients:
                # In their quiet hours: left waiting, untouched, for a run after it ends.
                if channel is None or quiet_hours_end(channel, r, at, default_quiet) is None:
                    groups[(r.subscriber_id, channel_name)].recipient = r
    by_first = {g.first.delivery_id: g for g in groups.values()}  # a recipient's delivery_id is its first row
    left = {d for ids in gone.values() for d in ids}
    wanted = [row.delivery_id for g in groups.values() if g.recipient or g.first.delivery_id in left
              for row in g.rows]
    if not wanted:
        return 0
    async with svc.db.write() as conn:
        taken = await claim_for_digest(conn, wanted, at)
    for g in groups.values():  # another run may have taken some rows first: they are its to send
        g.rows = [row for row in g.rows if row.delivery_id in taken]
    # The digest's outcome settles every row it lists, each at its own attempt.
    rows = {first: [Row(row.delivery_id, row.attempts + 1) for row in g.rows] for first, g in by_first.items()}
    step = SendStep(svc, "digest", _write_rows, deadline)
    try:
        for channel_name, ids in gone.items():
            step.settle(channel_name, left_before_sending(ids), rows)
        messages = await _messages(svc, run, [g for g in groups.values() if g.recipient and g.rows])
        results = await asyncio.gather(
            *(step.send(channel, message, recipients, rows, at) for channel, message, recipients in messages)
        )
    finally:
        await step.flush()  # what was sent is recorded even when the run is stopped
    await step.count()
    return sum(1 for sent in results for result in sent if result.outcome.status == "sent")


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
        pages: dict[tuple[str, date, date, tuple[int, ...]], tuple[int, str, str, ShortLinks]] = {}
        for key in lists:
            digest_id = await insert_digest(conn, key[0], key[1], key[2], list(key[3]))
            path = digest_path(digest_token(svc.signer, digest_id))
            # Its page's short link, and one per reader: the page passes the channel on (web/digest_pages.py).
            links = ShortLinks(**{via: short_url(public, await short_code(conn, tagged(path, via)))
                                  for via in SHORT_VIAS})
            pages[key] = (digest_id, public + path, short_url(public, await short_code(conn, path)), links)
    out: dict[tuple[str, int, str], tuple[DigestMessage, list[Recipient]]] = {}
    for key, members in lists.items():
        period, start, end, ids = key
        digest_id, url, short, links = pages[key]
        entries = tuple(
            {"title": p["title"], "department": p["department"], "doc_number": p["doc_number"],
             "page_url": page_url(public, pid), "short_url": short_url(public, p["code"])}
            for pid in ids if (p := listed.get(pid))
        )
        for g in members:
            assert g.recipient is not None
            locale = g.recipient.locale if g.recipient.locale in get_args(Locale) else DEFAULT_LOCALE
            message, recipients = out.setdefault(
                (g.first.channel, digest_id, locale),
                (DigestMessage(digest_id, words(locale).gettext(TITLES[period]), period, start, end, entries, url,
                               short, short_links=links), []),
            )
            recipients.append(g.recipient)
    return [(channel, message, recipients) for (channel, _, _), (message, recipients) in out.items()]


async def _write_rows(conn: AsyncConnection, updates: Sequence[dict[str, Any]]) -> None:
    """Digest rows not sent yet (a temporary failure, a rate window) wait for a digest again, due
    after the backoff (or the window), until the attempts run out: not a deliver job's to send."""
    await write_outcomes(conn, [u | {"new_status": "digest"} if u["new_status"] in ("queued", "held") else u
                                for u in updates])

"""The send step: the one place a message is handed to a channel, whoever sends it (policy and
notice deliveries, digests, case updates, case alerts, self-service messages).

A sender makes one `SendStep` per round of sending and calls `send` for each message; the step
- holds a message to a subscriber while the recipient is in their quiet hours (their own span or
  the service default) on a channel that honours them: `held` until they end;
- hands the message to the channel with the round's deadline (the job's send budget): no message,
  call or request starts after it, and what it leaves comes back `untried` (queued again, due at
  once, no attempt counted). What a channel still has out at the cutoff (a share of the job's
  time past the deadline) is cut off and becomes `retry`, so a send never outlives its job;
- a channel that is not configured, or templates that cannot render the message, make `failed`
  outcomes; any other exception from the channel makes `retry` outcomes for that message's
  recipients without an outcome yet, so the round's other outcomes are kept;
- turns each outcome, as the channel reports it, into updates of the ledger rows it settles
  (`core.retry.ledger_update`: attempts, backoff) and keeps them, with outcomes decided without
  sending (`settle`);
- writes them to the sender's ledger as they come (deliveries for policy, notice and digest rows,
  `case_notifications` for cases; nothing when the sender reads the outcome itself: case alerts,
  self-service messages): every FLUSH_ROWS outcomes or FLUSH_SECONDS, in short transactions of
  their own, retried on database errors, and what is left when the sender calls `flush`. A job
  cancelled or a worker killed so loses only the outcomes of the last moment: a row the provider
  accepted is written `sent` within a second, and nothing queues a `sent` row again. Outcomes are
  counted (`count`) in `pushsvc_deliveries_total` by kind once written.

Pacing stays inside the channels: they know their provider's units (SMS requests, e-mails, WeChat
calls per robot key) and answer a recipient whose turn is too far off with a `held` outcome whose
`not_before` is the turn; it reaches the ledger here like the end of quiet hours does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels.base import Channel, Report, send_deadline
from pushsvc.core.clock import now
from pushsvc.core.messages import Message, Outcome, OutcomeStatus, Recipient
from pushsvc.core.quiet_hours import parse_span, quiet_until
from pushsvc.core.rendering import RenderError
from pushsvc.core.retry import ledger_update
from pushsvc.delivery import simulator
from pushsvc.delivery.bounces import suppress_refused
from pushsvc.delivery.breaker import Breaker
from pushsvc.metrics import record_outcomes
from pushsvc.services import Services

log = logging.getLogger(__name__)

# The `kind` label of pushsvc_deliveries_total.
Kind = Literal["policy", "notice", "digest", "case", "alert", "self_service"]
# Where a sender's outcomes are recorded: a store function writing row updates in bulk.
Ledger = Callable[[AsyncConnection, Sequence[dict[str, Any]]], Awaitable[None]]
_ERROR_MAX = 500
# Outcomes are written as soon as one waits and no write is under way (what came in meanwhile goes
# in the next write): a killed worker's restart sends again only the messages in flight and those
# whose write was under way. Measured (bench.faults --quick, 5 kills, 8 connections): 45 extra
# copies, against 584 when writing every 200 outcomes or each second; it costs about 15% of the
# e-mail fan-out's rate (1,335 against 1,577 messages a second, still 1.34x the raw sender).
FLUSH_ROWS = 1
FLUSH_SECONDS = 0.05
# A write the database refused is tried again this often, backing off from the first pause up to
# the last, before the step gives up (and says so loudly: those rows would go out again).
_WRITE_TRIES = 6
_WRITE_PAUSE, _WRITE_PAUSE_MAX = 0.25, 2.0
# Past the deadline, this share of the job's time is left for what is in flight (an SMTP reply, a
# gateway's answer); then it is cut off, leaving the rest of the job's time to write the outcomes.
_CUTOFF_SHARE = 0.3


@dataclass(frozen=True)
class Row:
    """A ledger row an outcome settles, and which attempt at it this send is."""

    id: int
    attempt: int


# For each recipient (by its delivery_id), the rows its outcome settles: its own row, or every
# policy row a digest lists.
Rows = Mapping[int, Sequence[Row]]


@dataclass(frozen=True)
class Result:
    """What came of one recipient: the channel's outcome, and the updates of the rows it settles."""

    outcome: Outcome
    updates: tuple[dict[str, Any], ...]

    @property
    def status(self) -> str:
        """The rows' new status: sent, failed (for good), queued (to try again) or held."""
        return str(self.updates[0]["new_status"])

    @property
    def retry_at(self) -> datetime | None:
        """When the rows are due again (held or queued), else None."""
        due: datetime | None = self.updates[0]["new_next"]
        return due


def left_before_sending(delivery_ids: Iterable[int]) -> list[Outcome]:
    """Outcomes of rows whose subscriber left (or dropped the channel) since they were queued."""
    return [Outcome(d, "failed", "unsubscribed before sending") for d in delivery_ids]


def quiet_hours_end(channel: Channel, recipient: Recipient, at: datetime, default: tuple[int, int]) -> datetime | None:
    """When the recipient's quiet hours (their own span, else `default`) end, if `at` falls in them
    and the channel honours them; else None."""
    if not channel.honours_quiet_hours(recipient):
        return None
    start, end = default
    if recipient.quiet_start is not None and recipient.quiet_end is not None:
        start, end = recipient.quiet_start, recipient.quiet_end
    return quiet_until(at, start, end)


@dataclass
class SendStep:
    """One sender's round of sending: `send` each message, `settle` what was decided without
    sending, then `flush` what is not written yet and `count` it. `deadline` (the event loop's
    clock): no send starts after it; None, the job's send budget from now."""

    svc: Services
    kind: Kind
    ledger: Ledger | None = None  # None: the sender reads the outcome; nothing is written
    deadline: float | None = None
    settled: set[int] = field(default_factory=set, init=False)  # recipients (delivery_id) with an outcome
    _pending: list[tuple[tuple[dict[str, Any], ...], tuple[str, str]]] = field(
        default_factory=list, init=False, repr=False)  # (row updates, (channel, status)) not written yet
    _uncounted: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _writing: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _flushing: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = send_deadline(self.svc.settings)

    @property
    def _until(self) -> float:
        assert self.deadline is not None  # set in __post_init__
        return self.deadline

    async def send(self, channel_name: str, message: Message, recipients: Sequence[Recipient], rows: Rows,
                   at: datetime | None = None, *, quiet_hours: bool = True) -> list[Result]:
        """Send `message` to `recipients` on the channel, quiet hours (at `at`, default now) first
        unless `quiet_hours` is False (an urgent policy goes out at any hour).
        Never raises for the channel's sake (a cancellation aside); one Result per recipient.
        The simulator answers for its contacts (and for all of a test policy's) before anything else."""
        simulated, recipients = simulator.split(channel_name, recipients, simulator.is_test(message))
        results = self.settle(channel_name, simulated, rows)
        if not recipients:
            return results
        channel = self.svc.channels.get(channel_name)
        if channel is None:
            reason = f"channel '{channel_name}' is not configured"
            return results + self.settle(channel_name, [Outcome(r.delivery_id, "failed", reason) for r in recipients],
                                         rows)
        ready, held = list(recipients), list[Outcome]()
        if message.to_subscriber and quiet_hours:
            ready, held = self._quiet_hours(channel, ready, at or now())
        results += self.settle(channel_name, held, rows)
        if ready:
            results += await self._send_ready(channel_name, channel, message, ready, rows)
        return results

    def settle(self, channel_name: str, outcomes: Iterable[Outcome], rows: Rows) -> list[Result]:
        """Keep the row updates of outcomes (decided here or without sending) to be written. An
        outcome settling no row (rows another run took first) is dropped."""
        s, at = self.svc.settings, now()
        results: list[Result] = []
        for o in outcomes:
            updates = tuple(
                ledger_update(o if row.id == o.delivery_id else Outcome(row.id, o.status, o.error, o.provider_ref,
                                                                        o.not_before),
                              row.attempt, s.max_attempts, at, s.retry_base_seconds, s.retry_max_seconds)
                for row in rows.get(o.delivery_id, ())
            )
            self.settled.add(o.delivery_id)
            if not updates:
                continue
            results.append(Result(o, updates))
            self._keep(updates, (channel_name, str(updates[0]["new_status"])))
        return results

    async def flush(self) -> None:
        """Write what is not written yet (after a write under way), retrying on database errors.
        Shielded: a job cancelled meanwhile still records what its channel answered."""
        await asyncio.shield(self._flush())

    async def count(self) -> None:
        """Count the outcomes written since the last count, one per recipient."""
        counted, self._uncounted = self._uncounted, []
        if counted:
            await record_outcomes(self.svc.redis, self.kind, counted)

    async def _send_ready(self, channel_name: str, channel: Channel, message: Message, recipients: list[Recipient],
                          rows: Rows) -> list[Result]:
        """Hand the message over, settling each outcome as the channel reports it; recipients left
        without one (the cutoff, a cancellation, a channel that forgot them) become `retry`."""
        if asyncio.get_running_loop().time() >= self._until:  # nothing starts after the deadline
            return self.settle(channel_name, [Outcome(r.delivery_id, "untried", "the job's send budget ran out")
                                              for r in recipients], rows)
        waiting = {r.delivery_id for r in recipients}
        results: list[Result] = []

        def report(outcome: Outcome) -> None:
            if outcome.delivery_id in waiting:  # the first outcome of a recipient counts
                waiting.discard(outcome.delivery_id)
                results.extend(self.settle(channel_name, [outcome], rows))

        reason = "the channel gave no outcome"
        try:
            async with asyncio.timeout_at(self._until + self.svc.settings.job_timeout_seconds * _CUTOFF_SHARE):
                for outcome in await self._hand_over(channel, message, recipients, report):
                    report(outcome)
        except TimeoutError:
            reason = "no answer before the job's time ran out"
        except asyncio.CancelledError:
            # The provider may have taken these: an attempt each, and backoff rather than at once.
            self.settle(channel_name, [Outcome(d, "retry", "stopped while being sent") for d in waiting], rows)
            raise
        if waiting:
            log.warning("%s on %s: %d recipients without an outcome: %s", message.key, channel.name, len(waiting),
                        reason)
            for d in sorted(waiting):
                report(Outcome(d, "retry", reason))
        await suppress_refused(self.svc, channel_name, recipients, [r.outcome for r in results])
        return results

    def _keep(self, updates: tuple[dict[str, Any], ...], counted: tuple[str, str]) -> None:
        if self.ledger is None:
            if not simulator.is_simulated(updates[0]["new_provider"]):
                self._uncounted.append(counted)
            return
        self._pending.append((updates, counted))
        if self._flushing or (self._writing is not None and not self._writing.done()):
            return  # the write under way (or the sender's flush) picks them up
        if len(self._pending) >= FLUSH_ROWS:
            self._write_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._write_soon)

    def _write_soon(self) -> None:
        self._stop_timer()
        if self._pending and not self._flushing and (self._writing is None or self._writing.done()):
            self._writing = asyncio.create_task(self._write_in_background())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _write_in_background(self) -> None:
        try:
            await self._write_pending()
            await self.count()
        except Exception:
            log.exception("%s: writing outcomes in the background failed; the sender's flush tries again",
                          self.kind)
        finally:
            self._writing = None
            if self._pending and not self._flushing:  # what came in meanwhile
                if len(self._pending) >= FLUSH_ROWS:
                    self._write_soon()
                elif self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._write_soon)

    async def _flush(self) -> None:
        self._flushing = True
        try:
            self._stop_timer()
            while (writing := self._writing) is not None and not writing.done():
                await asyncio.wait([writing])
            while self._pending and self.ledger is not None:  # a write failing for good raises
                await self._write_pending()
        finally:
            self._flushing = False

    async def _write_pending(self) -> None:
        """Write the kept updates in a transaction of their own, trying again on database errors: an
        outcome lost here leaves its row `sending`, and a row the provider accepted would go out
        again once the claim's lease runs out."""
        batch, self._pending = self._pending, []
        if not batch or self.ledger is None:
            return
        updates = [u for row_updates, _ in batch for u in row_updates]
        try:
            for attempt in range(1, _WRITE_TRIES + 1):
                try:
                    async with self.svc.db.write() as conn:
                        await self.ledger(conn, updates)
                        # The simulator's messages are delivered as soon as they are sent.
                        await simulator.deliver_sent(
                            conn, [(channel, u) for row_updates, (channel, _) in batch for u in row_updates])
                    break
                except (SQLAlchemyError, OSError, TimeoutError) as exc:
                    if attempt == _WRITE_TRIES:
                        log.critical(
                            "%s: %d outcomes (%d sent) could not be written after %d tries (%s: %s); their "
                            "rows stay `sending` and go out again when the lease runs out unless a later "
                            "write gets through", self.kind, len(batch),
                            sum(1 for _, (_, status) in batch if status == "sent"), attempt, type(exc).__name__,
                            exc)
                        raise
                    log.warning("%s: writing %d outcomes failed (%s), trying again", self.kind, len(batch),
                                type(exc).__name__)
                    await asyncio.sleep(min(_WRITE_PAUSE_MAX, _WRITE_PAUSE * 2 ** (attempt - 1)))
        except BaseException:
            self._pending[:0] = batch  # kept for the next write
            raise
        # Simulated messages never left pushsvc: no metric of sends counts them.
        self._uncounted += [counted for row_updates, counted in batch
                            if not simulator.is_simulated(row_updates[0]["new_provider"])]

    def _quiet_hours(self, channel: Channel, recipients: list[Recipient],
                     at: datetime) -> tuple[list[Recipient], list[Outcome]]:
        default = parse_span(self.svc.settings.quiet_hours)
        ready: list[Recipient] = []
        held: list[Outcome] = []
        for r in recipients:
            until = quiet_hours_end(channel, r, at, default)
            if until is None:
                ready.append(r)
            else:
                held.append(Outcome(r.delivery_id, "held", not_before=until))
        return ready, held

    async def _hand_over(self, channel: Channel, message: Message, recipients: list[Recipient],
                         report: Report) -> list[Outcome]:
        # A provider that is down is not called: its recipients wait `held` for the next probe.
        breaker = Breaker(self.svc.redis, self.svc.settings)
        return await breaker.guard(channel.name, recipients, report,
                                   lambda ready, told: self._call(channel, message, ready, told))

    async def _call(self, channel: Channel, message: Message, recipients: list[Recipient],
                    report: Report) -> list[Outcome]:
        try:
            return await channel.send(message, recipients, self._until, report)
        except RenderError as exc:  # our template is wrong: sending again cannot help
            log.error("%s on %s cannot be rendered: %s", message.key, channel.name, exc)
            status: OutcomeStatus = "failed"
            reason = str(exc)
        except Exception as exc:  # a channel's fault must not lose the round's other outcomes
            log.exception("%s on %s: the channel failed", message.key, channel.name)
            status, reason = "retry", f"{type(exc).__name__}: {exc}"
        return [Outcome(r.delivery_id, status, reason[:_ERROR_MAX]) for r in recipients]

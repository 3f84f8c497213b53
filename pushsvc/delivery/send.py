"""The send step: the one place a message is handed to a channel, whoever sends it (policy and
notice deliveries, digests, case updates, case alerts, self-service messages).

A sender makes one `SendStep` per round of sending and calls `send` for each message; the step
- holds a message to a subscriber while the recipient is in their quiet hours (their own span or
  the service default) on a channel that honours them: `held` until they end;
- hands the message to the channel: a channel that is not configured, or templates that cannot
  render the message, make `failed` outcomes; any other exception from the channel makes `retry`
  outcomes for that message's recipients only, so the round's other outcomes are kept;
- turns each outcome into updates of the ledger rows it settles (`core.retry.ledger_update`:
  attempts, backoff) and keeps them, with outcomes decided without sending (`settle`);
- writes them (`write`) to the sender's ledger in the sender's own transaction (deliveries for
  policy, notice and digest rows, `case_notifications` for cases; nothing when the sender reads
  the outcome itself: case alerts, self-service messages), then counts them (`count`) in
  `pushsvc_deliveries_total` by kind.

Pacing stays inside the channels: they know their provider's units (SMS requests, e-mails, WeChat
calls per robot key) and answer a recipient whose turn is too far off with a `held` outcome whose
`not_before` is the turn; it reaches the ledger here like the end of quiet hours does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels.base import Channel
from pushsvc.core.clock import now
from pushsvc.core.messages import Message, Outcome, OutcomeStatus, Recipient
from pushsvc.core.quiet_hours import parse_span, quiet_until
from pushsvc.core.rendering import RenderError
from pushsvc.core.retry import ledger_update
from pushsvc.metrics import record_outcomes
from pushsvc.services import Services

log = logging.getLogger(__name__)

# The `kind` label of pushsvc_deliveries_total.
Kind = Literal["policy", "notice", "digest", "case", "alert", "self_service"]
# Where a sender's outcomes are recorded: a store function writing row updates in bulk.
Ledger = Callable[[AsyncConnection, Sequence[dict[str, Any]]], Awaitable[None]]
_ERROR_MAX = 500


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
    sending, then `write` the kept updates in a transaction and `count` them once it committed."""

    svc: Services
    kind: Kind
    ledger: Ledger | None = None  # None: the sender reads the outcome; nothing is written
    _updates: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _counted: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)  # (channel, status)

    async def send(self, channel_name: str, message: Message, recipients: Sequence[Recipient], rows: Rows,
                   at: datetime | None = None) -> list[Result]:
        """Send `message` to `recipients` on the channel, quiet hours (at `at`, default now) first.
        Never raises for the channel's sake; one Result per recipient."""
        channel = self.svc.channels.get(channel_name)
        if channel is None:
            reason = f"channel '{channel_name}' is not configured"
            return self.settle(channel_name, [Outcome(r.delivery_id, "failed", reason) for r in recipients], rows)
        ready, outcomes = list(recipients), list[Outcome]()
        if message.to_subscriber:
            ready, outcomes = self._quiet_hours(channel, ready, at or now())
        if ready:
            outcomes += await self._hand_over(channel, message, ready)
        return self.settle(channel_name, outcomes, rows)

    def settle(self, channel_name: str, outcomes: Iterable[Outcome], rows: Rows) -> list[Result]:
        """Keep the row updates of outcomes (decided here or without sending) for `write`. An outcome
        settling no row (rows another run took first) is dropped."""
        s, at = self.svc.settings, now()
        results: list[Result] = []
        for o in outcomes:
            updates = tuple(
                ledger_update(o if row.id == o.delivery_id else Outcome(row.id, o.status, o.error, o.provider_ref,
                                                                        o.not_before),
                              row.attempt, s.max_attempts, at, s.retry_base_seconds, s.retry_max_seconds)
                for row in rows.get(o.delivery_id, ())
            )
            if not updates:
                continue
            results.append(Result(o, updates))
            self._updates += updates
            self._counted.append((channel_name, str(updates[0]["new_status"])))
        return results

    async def write(self, conn: AsyncConnection) -> None:
        """The kept updates into the ledger, in the caller's transaction."""
        if self.ledger is not None and self._updates:
            await self.ledger(conn, self._updates)

    async def count(self) -> None:
        """Count the round's outcomes, one per recipient (after `write` committed)."""
        if self._counted:
            await record_outcomes(self.svc.redis, self.kind, self._counted)

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

    async def _hand_over(self, channel: Channel, message: Message, recipients: list[Recipient]) -> list[Outcome]:
        try:
            return await channel.send(message, recipients)
        except RenderError as exc:  # our template is wrong: sending again cannot help
            log.error("%s on %s cannot be rendered: %s", message.key, channel.name, exc)
            status: OutcomeStatus = "failed"
            reason = str(exc)
        except Exception as exc:  # a channel's fault must not lose the round's other outcomes
            log.exception("%s on %s: the channel failed", message.key, channel.name)
            status, reason = "retry", f"{type(exc).__name__}: {exc}"
        return [Outcome(r.delivery_id, status, reason[:_ERROR_MAX]) for r in recipients]

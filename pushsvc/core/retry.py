"""What a send outcome does to its ledger row: sent, failed for good, or queued again later.
`unknown` (the provider may have taken it) stays `unknown` with its request's ref and no retry
time: nothing claims it again; a receipt or a later query settles it."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from pushsvc.core.figures import error_code
from pushsvc.core.messages import Outcome


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter between half and the whole step, so that retries of
    one failed batch spread out instead of hitting a recovering server together."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step * (0.5 + 0.5 * (rng or random).random())


ATTEMPTS_LIMIT = 10_000  # ledgers count attempts in a SMALLINT


def attempts_for(seconds: float, base: float, cap: float) -> int:
    """The fewest attempts whose backoffs add up to at least `seconds` even when every jitter
    draws its shortest wait (half a step): giving up no sooner than that many attempts means
    giving up no sooner than `seconds` after the first. Time spent `held` (quiet hours, a pace,
    a provider that is down) only adds to it. ValueError beyond ATTEMPTS_LIMIT."""
    attempts, waited = 1, 0.0
    while waited < seconds:
        waited += min(cap, base * (2 ** min(attempts - 1, 64))) / 2
        attempts += 1
        if attempts > ATTEMPTS_LIMIT:
            raise ValueError(f"would take more than {ATTEMPTS_LIMIT} attempts")
    return attempts


# Outcomes that are no attempt at sending: waiting (quiet hours, a provider's pace) and not tried
# (the job's send budget ran out first). They leave a row's attempts as they were.
NOT_ATTEMPTS = frozenset({"held", "untried"})


def ledger_update(
    outcome: Outcome, attempts: int, max_attempts: int, at: datetime, base: float, cap: float
) -> dict[str, Any]:
    """The row values for write_outcomes(). `attempts`: which attempt at the row this outcome is
    (its count before it, plus one). Attempts are counted here, when an outcome is written, never
    at a claim and never taken back: `new_attempts` is the row's count after this outcome, so it
    only grows. The error is kept as its code only (`error_code`)."""
    row: dict[str, Any] = {
        "did": outcome.delivery_id,
        "new_attempts": attempts - 1 if outcome.status in NOT_ATTEMPTS else attempts,
        "new_status": outcome.status,
        "new_error": error_code(outcome.error),
        "new_ref": outcome.provider_ref,
        "new_provider": outcome.provider,
        "new_next": None,
        "new_sent": at if outcome.status == "sent" else None,
        "new_updated": at,
    }
    if outcome.status == "held":
        row["new_next"] = outcome.not_before
    elif outcome.status == "untried":  # back to the queue, due at once: the next run takes it
        row["new_status"] = "queued"
        row["new_next"] = at
    elif outcome.status == "retry":
        if attempts >= max_attempts:
            row["new_status"] = "failed"
            row["new_error"] = f"gave up after {attempts} attempts: {error_code(outcome.error)}"
        else:
            row["new_status"] = "queued"
            backoff = at + timedelta(seconds=backoff_seconds(attempts, base, cap))
            # A provider may say when to come back (a rate window opening): not before that.
            row["new_next"] = max(backoff, outcome.not_before) if outcome.not_before else backoff
    return row

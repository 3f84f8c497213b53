"""What a send outcome does to its ledger row: sent, failed for good, or queued again later."""

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


def ledger_update(
    outcome: Outcome, attempts: int, max_attempts: int, at: datetime, base: float, cap: float
) -> dict[str, Any]:
    """The row values for write_outcomes(). The error is kept as its code only (`error_code`)."""
    row: dict[str, Any] = {
        "did": outcome.delivery_id,
        "new_status": outcome.status,
        "new_error": error_code(outcome.error),
        "new_ref": outcome.provider_ref,
        "new_next": None,
        "new_sent": at if outcome.status == "sent" else None,
        "new_updated": at,
    }
    if outcome.status == "held":
        row["new_next"] = outcome.not_before
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

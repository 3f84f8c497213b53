"""Ledger consequences of outcomes, and quiet hours, with no servers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from pushsvc.core.messages import Outcome
from pushsvc.core.quiet_hours import parse_span, quiet_until
from pushsvc.core.retry import backoff_seconds, ledger_update

AT = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)  # 12:00 in Guangzhou


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    steps = [backoff_seconds(n, 2, 60, rng) for n in range(1, 9)]
    assert 1 <= steps[0] <= 2
    assert steps[3] >= 8 and max(steps) <= 60


def test_outcomes_map_to_rows() -> None:
    sent = ledger_update(Outcome(1, "sent", provider_ref="m1"), 1, 5, AT, 2, 60)
    assert sent["new_status"] == "sent" and sent["new_sent"] == AT and sent["new_ref"] == "m1"
    retry = ledger_update(Outcome(2, "retry", "451 later"), 1, 5, AT, 2, 60)
    assert retry["new_status"] == "queued" and AT < retry["new_next"] <= AT + timedelta(seconds=2)
    given_up = ledger_update(Outcome(3, "retry", "451 later"), 5, 5, AT, 2, 60)
    assert given_up["new_status"] == "failed" and "gave up after 5 attempts: 451" == given_up["new_error"]  # the code only
    failed = ledger_update(Outcome(4, "failed", "550 no such user"), 1, 5, AT, 2, 60)
    assert failed["new_status"] == "failed" and failed["new_next"] is None
    later = AT + timedelta(minutes=5)
    assert ledger_update(Outcome(5, "retry", "45009", not_before=later), 1, 5, AT, 2, 60)["new_next"] == later
    assert ledger_update(Outcome(6, "held", not_before=later), 1, 5, AT, 2, 60)["new_status"] == "held"


def test_quiet_hours_cross_midnight_in_local_time() -> None:
    start, end = parse_span("21:00-08:00")
    assert quiet_until(AT, start, end) is None  # noon
    night = datetime(2026, 11, 28, 14, 30, tzinfo=timezone.utc)  # 22:30 local
    assert quiet_until(night, start, end) == datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)  # 08:00 local
    early = datetime(2026, 11, 28, 22, 0, tzinfo=timezone.utc)  # 06:00 local next day
    assert quiet_until(early, start, end) == datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)
    assert quiet_until(night, 0, 0) is None

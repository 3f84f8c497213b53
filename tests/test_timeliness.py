"""Timeliness: published within 20 working days of being produced, on the mainland calendar (its
holidays and make-up working weekends), and how GET /v1/policies/{id} shows it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.timeliness import timeliness, went_public
from tests.conftest import Api
from tests.test_api_foundation import POLICY


@pytest.mark.parametrize(("produced", "published", "days", "late_by"), [
    # Across National Day 2025 (1-8 October off): Sun 28 Sep and Sat 11 Oct are make-up working days.
    # After Fri 26 Sep: 28, 29, 30 Sep, then 9, 10, 11 Oct (make-up Saturday), 13-17, 20-24, 27-30.
    (date(2025, 9, 26), date(2025, 10, 30), 20, 0),
    (date(2025, 9, 26), date(2025, 10, 31), 21, 1),
    # Without the two make-up days the 20th working day would have been 3 November.
    (date(2025, 9, 25), date(2025, 10, 29), 20, 0),
    # Eight calendar days of holiday count for nothing: 30 Sep -> 9 Oct is one working day.
    (date(2025, 9, 30), date(2025, 10, 9), 1, 0),
    # The make-up Saturday counts; the Sunday after it does not.
    (date(2025, 10, 10), date(2025, 10, 11), 1, 0),
    (date(2025, 10, 10), date(2025, 10, 12), 1, 0),
    # Published on the day it was produced, or (a typo) before it: within.
    (date(2025, 10, 9), date(2025, 10, 9), 0, 0),
    (date(2025, 10, 9), date(2025, 10, 1), 0, 0),
])
def test_working_days_across_national_day(produced: date, published: date, days: int, late_by: int) -> None:
    t = timeliness(produced, published)
    assert (t.working_days, t.late_by, t.within, t.limit) == (days, late_by, late_by == 0, 20)


def test_went_public_is_publish_at_only_when_scheduled() -> None:
    posted = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    later = posted + timedelta(days=3)
    assert went_public(later, posted) == later
    assert went_public(posted - timedelta(days=30), posted) == posted  # a back-dated publish_at
    assert went_public(None, posted) == posted


async def test_policy_shows_its_timeliness(api: Api) -> None:
    key = (await api.department())["api_key"]
    status, late = await api.call("POST", "/v1/policies", key, json={**POLICY, "produced_on": "2025-09-26"})
    assert status == 202, late
    today = datetime.now(LOCAL_ZONE).date()
    expected = timeliness(date(2025, 9, 26), today)
    status, got = await api.call("GET", f"/v1/policies/{late['id']}", key)
    assert status == 200 and got["timeliness"] == {
        "produced_on": "2025-09-26", "published_on": today.isoformat(), "working_days": expected.working_days,
        "limit": 20, "on_time": False, "late_by": expected.working_days - 20,
    }
    # Scheduled: counted to its publish_at (local date). Without produced_on: nothing to count.
    at = datetime.combine(today + timedelta(days=3), datetime.min.time(), LOCAL_ZONE) + timedelta(hours=9)
    status, scheduled = await api.call("POST", "/v1/policies", key, json={
        **POLICY, "produced_on": today.isoformat(), "publish_at": at.isoformat()})
    assert status == 202 and scheduled["timeliness"]["published_on"] == (today + timedelta(days=3)).isoformat()
    assert scheduled["timeliness"]["on_time"] is True and scheduled["timeliness"]["late_by"] == 0
    status, undated = await api.call("POST", "/v1/policies", key, json={**POLICY, "produced_on": None})
    assert status == 202 and undated["timeliness"] is None

"""Working days on the mainland calendar, checked against the published 2025 and 2026 arrangements."""

from __future__ import annotations

from datetime import date

import pytest

from pushsvc.core.workdays import add_working_days, is_working_day, working_days_between


def test_the_calendar_we_rely_on() -> None:
    # 2025 National Day + Mid-Autumn: 1-8 October off, Sunday 28 September and Saturday 11 October worked.
    assert not any(is_working_day(date(2025, 10, d)) for d in range(1, 9))
    assert is_working_day(date(2025, 9, 28)) and is_working_day(date(2025, 10, 11))
    # 2026 Spring Festival: 15-23 February off, Saturdays 14 and 28 February worked.
    assert not any(is_working_day(date(2026, 2, d)) for d in range(15, 24))
    assert is_working_day(date(2026, 2, 14)) and is_working_day(date(2026, 2, 28))


@pytest.mark.parametrize(("start", "n", "due"), [
    # Across National Day 2025: Tue 30 Sep + 1 → Thu 9 Oct; the make-up Saturday 11 Oct counts.
    (date(2025, 9, 30), 1, date(2025, 10, 9)),
    (date(2025, 9, 30), 3, date(2025, 10, 11)),  # 9, 10, Sat 11
    (date(2025, 9, 30), 4, date(2025, 10, 13)),  # Sunday 12 is off
    # Make-up Sunday before the holiday: Fri 26 Sep + 1 → Sun 28 Sep.
    (date(2025, 9, 26), 1, date(2025, 9, 28)),
    # 20 working days from 25 Sep 2025 (the publication limit of the domain).
    (date(2025, 9, 25), 20, date(2025, 10, 29)),
    # Across the Spring Festival 2026: Fri 13 Feb + 1 → Sat 14 Feb (make-up), + 2 → Tue 24 Feb.
    (date(2026, 2, 13), 1, date(2026, 2, 14)),
    (date(2026, 2, 13), 2, date(2026, 2, 24)),
    (date(2026, 2, 13), 6, date(2026, 2, 28)),  # 24, 25, 26, 27, Sat 28
    (date(2026, 2, 13), 7, date(2026, 3, 2)),
    # A start on a rest day counts from the next working day; 0 days is the start itself.
    (date(2025, 10, 4), 1, date(2025, 10, 9)),
    (date(2025, 10, 4), 0, date(2025, 10, 4)),
    # Backwards across the Spring Festival.
    (date(2026, 2, 24), -1, date(2026, 2, 14)),
])
def test_add_working_days(start: date, n: int, due: date) -> None:
    assert add_working_days(start, n) == due
    assert working_days_between(start, due) == n


def test_working_days_between() -> None:
    assert working_days_between(date(2025, 9, 30), date(2025, 10, 8)) == 0  # the whole holiday
    assert working_days_between(date(2026, 2, 1), date(2026, 2, 28)) == 16  # 2-6, 9-13, Sat 14, 24-27, Sat 28
    assert working_days_between(date(2026, 2, 28), date(2026, 2, 1)) == -16
    assert working_days_between(date(2026, 3, 2), date(2026, 3, 2)) == 0


def test_unpublished_year_falls_back_to_weekdays() -> None:
    # 2030 is beyond the package's data: Monday to Friday.
    assert add_working_days(date(2030, 1, 4), 1) == date(2030, 1, 7)  # Friday → Monday

"""Working days on the mainland calendar: public holidays and make-up working weekends (调休) from
the `chinese-calendar` package. Pure functions, no I/O.

The package knows the years the State Council has published (each year's arrangement comes out in
the November before). For a year it does not know yet, Monday to Friday are taken as working days:
a due date far ahead is then an estimate, and becomes exact once the package is updated.
"""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar


def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year not published yet
        return day.weekday() < 5


def add_working_days(start: date, n: int) -> date:
    """The n-th working day after `start` (before it when n < 0); `start` itself for n == 0.
    `start` need not be a working day: a case filed on a Sunday with 1 working day is due Monday."""
    step = timedelta(days=1 if n >= 0 else -1)
    day, left = start, abs(n)
    while left:
        day += step
        if is_working_day(day):
            left -= 1
    return day


def working_days_between(a: date, b: date) -> int:
    """Working days after `a` up to and including `b` (negative when b < a), so that
    working_days_between(d, add_working_days(d, n)) == n."""
    if b < a:
        return -working_days_between(b, a)
    return sum(1 for i in range(1, (b - a).days + 1) if is_working_day(a + timedelta(days=i)))

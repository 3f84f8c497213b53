"""Timeliness: a policy is to be published within 20 working days of being produced (or changed),
counted on the mainland calendar with its make-up working weekends. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pushsvc.core.quiet_hours import local_date
from pushsvc.core.workdays import working_days_between

LIMIT_WORKING_DAYS = 20


@dataclass(frozen=True)
class Timeliness:
    produced_on: date
    published_on: date
    working_days: int  # working days after produced_on up to and including published_on
    limit: int = LIMIT_WORKING_DAYS

    @property
    def within(self) -> bool:
        return self.working_days <= self.limit

    @property
    def late_by(self) -> int:
        """Working days past the limit; 0 when within it."""
        return max(0, self.working_days - self.limit)


def timeliness(produced_on: date, published_on: date, limit: int = LIMIT_WORKING_DAYS) -> Timeliness:
    """A date published before the date produced (a typo, most likely) counts as 0 days, not negative."""
    return Timeliness(produced_on, published_on, max(0, working_days_between(produced_on, published_on)), limit)


def policy_timeliness(produced_on: date | None, public_at: datetime) -> Timeliness | None:
    """A policy's timeliness, up to the local date it went public (`went_public`); None without produced_on."""
    return timeliness(produced_on, local_date(public_at)) if produced_on else None


def went_public(publish_at: datetime | None, created_at: datetime) -> datetime:
    """When a policy became public: its publish_at if it was scheduled, else when it was posted.
    (Its published_at marks the end of the fan-out, after the first messages went out.)"""
    return publish_at if publish_at is not None and publish_at > created_at else created_at

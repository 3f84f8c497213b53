"""A department's policies, newest first, filtered and a page at a time: one function behind both
`GET /v1/policies` and the console's policy list."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import BaseModel, Field

from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.figures import EARLIEST, LATEST, parse_period
from pushsvc.core.links import page_url
from pushsvc.services import Services
from pushsvc.store.policies import find_policies
from pushsvc.store.reports import local_midnight

# What policies.status holds (store/schema.py), in the order a policy goes through them.
POLICY_STATUSES = ("scheduled", "publishing", "published", "repealed", "lapsed")
WORDS_MAX = 200


@dataclass(frozen=True)
class PolicyFilter:
    status: str | None = None
    domain: str | None = None
    first: date | None = None  # local dates, both included
    last: date | None = None
    words: str | None = None  # found in the title or the document number


class PolicySummary(BaseModel):
    id: int
    department_id: int
    department: str = Field(description="the department's name")
    title: str
    doc_number: str | None
    domain: str
    status: str = Field(description=" | ".join(POLICY_STATUSES))
    revision: int
    matched: int = Field(description="subscribers the fan-out matched so far")
    test: bool = Field(description="published with a test key: the simulator answered for every message")
    publish_at: datetime | None = Field(description="when a scheduled policy goes public")
    public_at: datetime = Field(description="when it went (or goes) public: publish_at if scheduled, else when posted; "
                                            "what from and to filter on")
    published_at: datetime | None = Field(description="when its fan-out finished")
    created_at: datetime
    page_url: str


class PolicyList(BaseModel):
    items: list[PolicySummary]
    next_cursor: str | None


def parse_filter(raw: Mapping[str, str], domains: Collection[str], today: date) -> PolicyFilter:
    """The filter from query values `status`, `domain`, `from`, `to` (YYYY-MM-DD) and `q`; raises
    ValidationFailed naming every bad field. Empty values filter nothing."""
    errors: list[FieldError] = []
    status = raw.get("status") or None
    if status is not None and status not in POLICY_STATUSES:
        errors.append(FieldError("status", f"must be one of {', '.join(POLICY_STATUSES)}"))
    domain = raw.get("domain") or None
    if domain is not None and domain not in domains:
        errors.append(FieldError("domain", "must be one of the catalogue's domain slugs"))
    words = (raw.get("q") or "").strip() or None
    if words is not None and len(words) > WORDS_MAX:
        errors.append(FieldError("q", f"must be at most {WORDS_MAX} characters"))
    first = last = None
    raw_from, raw_to = raw.get("from") or None, raw.get("to") or None
    try:
        # No period given is every policy: the widest dates parse_period accepts.
        first, last = parse_period(raw_from or EARLIEST.isoformat(), raw_to or LATEST.isoformat(), today)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    return PolicyFilter(status=status, domain=domain, words=words,
                        first=first if raw_from else None, last=last if raw_to else None)


async def list_policies(
    svc: Services, department_id: int | None, wanted: PolicyFilter, *, before_id: int, limit: int
) -> tuple[list[PolicySummary], int | None]:
    """Up to `limit` policies of the department (None: every department's) below id `before_id`
    (0: from the newest), and the id the next page starts below (None at the end)."""
    async with svc.db.read() as conn:
        rows = await find_policies(
            conn, department_id=department_id, status=wanted.status, domain=wanted.domain, words=wanted.words,
            since=local_midnight(wanted.first) if wanted.first else None,
            until=local_midnight(wanted.last + timedelta(days=1)) if wanted.last else None,
            before_id=before_id, limit=limit + 1,
        )
    items = [PolicySummary(**row, page_url=page_url(svc.settings.public_url, row["id"])) for row in rows[:limit]]
    return items, items[-1].id if len(rows) > limit else None

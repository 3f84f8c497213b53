"""The channel-neutral messages about a case: an update for the applicant, an alert for the department."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pushsvc.core.case_states import labels, next_steps
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.tokens import TokenSigner

CASE_PURPOSE = "case"
# A case page link stays good long after the case ends: people look results up again.
PAGE_TOKEN_TTL = timedelta(days=730)


def case_page_token(signer: TokenSigner, case_id: int) -> str:
    return signer.sign(CASE_PURPOSE, {"c": case_id}, ttl=PAGE_TOKEN_TTL)


def case_path(token: str) -> str:
    return f"/c/{token}"


class _AboutACase:
    """Messages about a case link to its page, and nobody subscribed to them: there is nothing to
    unsubscribe from."""

    page_url: str

    @property
    def qr_url(self) -> str:
        return f"{self.page_url}/qr.png"

    @property
    def to_subscriber(self) -> bool:
        return False


@dataclass(frozen=True)
class CaseMessage(_AboutACase):
    """One event of one case, told to its applicant. `status_label` and `next_step` are keyed by
    locale: each template takes its own language's words."""

    case_id: int
    event_seq: int
    title: str  # the service item
    case_no: str
    department: str
    status: str
    status_label: dict[str, str]
    next_step: dict[str, str]
    note: str
    occurred_on: date
    due_on: date | None
    page_url: str
    short_url: str
    kind: str = "case_update"
    version: str = "1"  # an event never changes: its key alone names the content

    @property
    def key(self) -> str:
        return f"case:{self.case_id}:{self.event_seq}"


@dataclass(frozen=True)
class CaseAlertMessage(_AboutACase):
    """To a department: a case has used 80% of its working days."""

    case_id: int
    title: str  # the service item
    case_no: str
    department: str
    status_label: dict[str, str]
    time_limit_days: int
    elapsed_days: int
    due_on: date
    page_url: str
    short_url: str
    kind: str = "case_alert"
    version: str = "1"

    @property
    def key(self) -> str:
        return f"case-alert:{self.case_id}"


def urls(public_url: str, case: dict[str, Any]) -> tuple[str, str]:
    """(page URL, short URL) of a stored case."""
    return public_url + case_path(case["page_token"]), f"{public_url}/s/{case['short_code']}"


def case_message(public_url: str, case: dict[str, Any], event: dict[str, Any]) -> CaseMessage:
    """`case` as loaded with its department's name; `event` a timeline row (status, note, occurred_at, seq)."""
    page, short = urls(public_url, case)
    return CaseMessage(
        case_id=case["id"], event_seq=event["event_seq"], title=case["service_item"], case_no=case["case_no"],
        department=case["department"], status=event["status"], status_label=labels(event["status"]),
        next_step=next_steps(event["status"], event["note"]), note=event["note"] or "",
        occurred_on=local_date(event["occurred_at"]), due_on=case["due_on"], page_url=page, short_url=short,
    )

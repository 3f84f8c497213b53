"""A case's messages made from its stored rows (the kinds are `pushsvc.core.messages`): its page's
token and links, the status in each locale's words, an update for the applicant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from pushsvc.core.case_states import LABELS, NEXT_STEPS
from pushsvc.core.messages import CaseMessage
from pushsvc.core.models import Locale
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.tokens import TokenSigner
from pushsvc.i18n import words

CASE_PURPOSE = "case"
# A case page link stays good long after the case ends: people look results up again.
PAGE_TOKEN_TTL = timedelta(days=730)


def case_page_token(signer: TokenSigner, case_id: int) -> str:
    return signer.sign(CASE_PURPOSE, {"c": case_id}, ttl=PAGE_TOKEN_TTL)


def case_path(token: str) -> str:
    return f"/c/{token}"


def status_labels(status: str) -> dict[str, str]:
    """The status in plain words, keyed by locale."""
    return {locale: words(locale).gettext(LABELS[status]) for locale in get_args(Locale)}


def next_steps(status: str, note: str | None) -> dict[str, str]:
    """What to do next, keyed by locale, the note woven in where the status calls for it."""
    note = " ".join((note or "").split())
    return {locale: words(locale).gettext(NEXT_STEPS[status], note=note).strip() for locale in get_args(Locale)}


def urls(public_url: str, case: dict[str, Any]) -> tuple[str, str]:
    """(page URL, short URL) of a stored case."""
    return public_url + case_path(case["page_token"]), f"{public_url}/s/{case['short_code']}"


def case_message(public_url: str, case: dict[str, Any], event: dict[str, Any]) -> CaseMessage:
    """`case` as loaded with its department's name; `event` a timeline row (status, note, occurred_at, seq)."""
    page, short = urls(public_url, case)
    return CaseMessage(
        case_id=case["id"], event_seq=event["event_seq"], title=case["service_item"], case_no=case["case_no"],
        department=case["department"], status=event["status"], status_label=status_labels(event["status"]),
        next_step=next_steps(event["status"], event["note"]), note=event["note"] or "",
        occurred_on=local_date(event["occurred_at"]), due_on=case["due_on"], page_url=page, short_url=short,
    )

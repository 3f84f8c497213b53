"""What someone sends from a policy page's feedback form: a rating (useful / not useful), a
question, and a contact if they want the answer. Checked here (errors by field, as msgids), held
to the limits (per client address and per policy, shared through Redis), then stored.

No CAPTCHA: a person in a service hall with a phone should not have to solve puzzles. The limits
and the CSRF token (checked by the page) keep floods out; a rating holds nobody's data.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.core.clock import now
from pushsvc.core.identifiers import normalise_email, normalise_phone
from pushsvc.core.msgid import N_
from pushsvc.ratelimit import Rate, RateLimiter
from pushsvc.services import Services
from pushsvc.store import feedback as store

log = logging.getLogger(__name__)

FEEDBACK_LIMITS = redis_keys.rate_limits("feedback")  # per client address and per policy
QUESTION_MAX = 2000  # characters: a question, not a letter
CONTACT_MAX = 254
ContactKind = Literal["email", "sms"]

NO_FEEDBACK = N_("Choose useful or not useful, or write a question.")
BAD_RATING = N_("Choose useful or not useful.")
TOO_LONG = N_("Please keep your question under %(max)s characters.")
CONTACT_WITHOUT_QUESTION = N_("Write your question too, or leave the contact empty.")
BAD_CONTACT = N_("Give a valid e-mail address or mainland China mobile number.")


@dataclass(frozen=True)
class Typed:
    """The form as typed, shown again on an error."""

    rating: str = ""  # useful | not_useful | ""
    question: str = ""
    contact: str = ""


@dataclass(frozen=True)
class Feedback:
    useful: bool | None
    question: str | None
    contact_kind: ContactKind | None
    contact: str | None


def _clean(text: str) -> str:
    """NFC, no control characters but line breaks, trimmed."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    return "".join(c for c in text if c == "\n" or unicodedata.category(c) != "Cc").strip()


def read_contact(text: str) -> tuple[ContactKind, str] | None:
    try:
        return ("email", normalise_email(text)) if "@" in text else ("sms", normalise_phone(text))
    except ValueError:
        return None


def check(typed: Typed) -> tuple[Feedback | None, dict[str, str]]:
    """The feedback, or the errors by field (msgids; `question` TOO_LONG takes `max`)."""
    errors: dict[str, str] = {}
    if typed.rating not in ("", "useful", "not_useful"):
        errors["rating"] = BAD_RATING
    question = _clean(typed.question)
    if len(question) > QUESTION_MAX:
        errors["question"] = TOO_LONG
    contact_text = typed.contact.strip()
    contact = None
    if contact_text:
        contact = read_contact(contact_text) if len(contact_text) <= CONTACT_MAX else None
        if not question:
            errors["contact"] = CONTACT_WITHOUT_QUESTION
        elif contact is None:
            errors["contact"] = BAD_CONTACT
    if not typed.rating and not question and not errors:
        errors["rating"] = NO_FEEDBACK
    if errors:
        return None, errors
    return Feedback(useful=None if not typed.rating else typed.rating == "useful", question=question or None,
                    contact_kind=contact[0] if contact else None, contact=contact[1] if contact else None), {}


async def wait_for_turn(svc: Services, policy_id: int, client: str) -> float | None:
    """None when this client may send feedback on this policy now (a slot of each limit is taken),
    else seconds until it may. The address is checked first: one busy sender must not use up a
    policy's slots."""
    limiter = RateLimiter(svc.redis, FEEDBACK_LIMITS)
    settings = svc.settings
    for key, per_hour in ((f"address:{client}", settings.feedback_per_address_per_hour),
                          (f"policy:{policy_id}", settings.feedback_per_policy_per_hour)):
        try:
            slot = await limiter.reserve(key, Rate(per_hour, 3600.0))
        except RedisError as exc:
            # As the request limits do: a limit that cannot be checked lets the feedback through.
            log.warning("feedback limit not checked (Redis: %s)", type(exc).__name__)
            return None
        if not slot.granted:
            return slot.wait
    return None


async def record(svc: Services, policy: dict[str, Any], feedback: Feedback, locale: str) -> int | None:
    """Store the rating and the question (one transaction); the question's id, if there is one."""
    at = now()
    policy_id, department_id = int(policy["id"]), int(policy["department_id"])
    async with svc.db.write() as conn:
        if feedback.useful is not None:
            await store.add_rating(conn, policy_id, feedback.useful, at)
        if feedback.question is None:
            return None
        return await store.add_question(conn, policy_id, department_id, feedback.question, feedback.contact_kind,
                                        feedback.contact, locale, at)

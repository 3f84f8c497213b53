"""A draft sent to the clerk themselves before it goes for review: each chosen channel's message,
in the page's language, to the person's own e-mail, phone and WeChat openid (those they have),
marked as a test ("[测试]", "[測試]", "[TEST]": the e-mail subject's title, the SMS text after the
signature, the WeChat title).

The `test_send` job sends it through the one send step with no ledger: no delivery row, nothing in
any report or in the delivery counters. The job's arguments name the draft and the person, never a
contact; it reads the contacts as they are then. A person may ask TESTS_PER_HOUR times an hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from pushsvc import redis_keys
from pushsvc.core.messages import NoticeMessage, PolicyMessage, Recipient
from pushsvc.core.policies import drafted
from pushsvc.delivery.send import Row, SendStep
from pushsvc.jobs import TEST_SEND, enqueue
from pushsvc.policies.drafts import department_publisher, own_draft
from pushsvc.policies.renderings import LOCALES, draft_message
from pushsvc.ratelimit import Rate, RateLimiter
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import drafts as store
from pushsvc.store.staff import staff_by_id

log = logging.getLogger(__name__)

TEST_SEND_LIMITS = redis_keys.rate_limits("test-send")  # per person
TESTS_PER_HOUR = Rate(10, 3600.0)
MARKS = {"zh-CN": "[测试]", "zh-HK": "[測試]", "en": "[TEST]"}
# Where each channel shows the mark first: an SMS text begins with the department's name.
_MARKED_FIELD = {"email": "title", "sms": "department", "wechat": "title"}


class TooSoon(Exception):
    """The person's test sends for this hour are used up; `wait` seconds until the next."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"try again in {wait:.0f} s")
        self.wait = wait


@dataclass(frozen=True)
class _Trial(PolicyMessage):
    # Not to a subscriber: no unsubscribe link, no waiting for quiet hours.
    to_subscriber: ClassVar[bool] = False


@dataclass(frozen=True)
class _TrialNotice(NoticeMessage):
    to_subscriber: ClassVar[bool] = False


def marked(message: PolicyMessage, channel: str, locale: str) -> PolicyMessage:
    """`message` as a test on `channel` in `locale`."""
    field = _MARKED_FIELD.get(channel, "title")
    fields: dict[str, Any] = vars(message) | {field: f"{MARKS[locale]} {getattr(message, field)}"}
    cls = _TrialNotice if isinstance(message, NoticeMessage) else _Trial
    return drafted(cls(**fields))


async def request_test_send(svc: Services, department_id: int, draft_id: int, actor: str, staff_id: int,
                            locale: str) -> None:
    """Check the draft renders (ValidationFailed otherwise), take one of the person's test sends
    (TooSoon), enqueue the job and record the step."""
    draft = await own_draft(svc, department_id, draft_id)
    await draft_message(svc, await department_publisher(svc, department_id), draft)
    slot = await RateLimiter(svc.redis, TEST_SEND_LIMITS).reserve(f"staff:{staff_id}", TESTS_PER_HOUR)
    if not slot.granted:
        raise TooSoon(slot.wait)
    await enqueue(svc.redis, TEST_SEND, draft_id, staff_id, locale if locale in LOCALES else "zh-CN")
    async with svc.db.write() as conn:
        await store.add_event(conn, draft_id, actor, "test_sent", draft["version"])
        await audit.record(conn, actor, "draft.test_sent", None, draft_id=draft_id, version=draft["version"])


async def run_test_send(svc: Services, draft_id: int, staff_id: int, locale: str) -> list[str]:
    """Send the draft as it is now to the person; returns the channels it went out on."""
    async with svc.db.read() as conn:
        person = await staff_by_id(conn, staff_id)
        draft = await store.get_draft(conn, draft_id)
    if person is None or person["disabled_at"] is not None or draft is None:
        log.info("test send of draft %s: the draft or person %s is gone", draft_id, staff_id)
        return []
    message, channels = await draft_message(svc, await department_publisher(svc, draft["department_id"]), draft)
    recipient = Recipient(delivery_id=staff_id, subscriber_id=0, name=person["display_name"], locale=locale,
                          email=person["email"], phone=person["phone"], wechat_openid=person["wechat_openid"])
    step = SendStep(svc, "self_service")  # no ledger, and not counted: a test is in no figure
    sent: list[str] = []
    for name in channels:
        channel = svc.channels.get(name)
        if channel is None or channel.address(recipient) is None:
            continue
        [result] = await step.send(name, marked(message, name, locale), [recipient], {staff_id: (Row(staff_id, 1),)})
        if result.status == "sent":
            sent.append(name)
        else:
            log.warning("test send of draft %s by %s: %s", draft_id, name, result.outcome.error)
    return sent

"""The figures departments are assessed on: what each number means, and the pure arithmetic behind
them (failure reasons, percentiles, reach). The store counts; this module defines and combines.

Definitions (the README repeats them for readers of the report):
- matched: subscribers the fan-out matched (one ledger row per subscriber and channel; a subscriber
  matched on two channels counts once per policy, once per channel in `by_channel`).
- sent: messages the provider accepted (the SMTP server, the SMS gateway, WeChat), whatever a
  receipt said afterwards. delivered: confirmed by a delivery receipt (SMS only: e-mail and WeChat
  send none). failed: given up for good (a permanent refusal, a failed receipt, or a temporary
  failure that ran out of attempts). pending: not final yet (queued, sending, held, digest).
- reached: subscribers with at least one message `sent` or `delivered`; reach rate = reached / matched.
- time to delivery: from the moment the policy went public to its receipt (`delivered_at`), or to
  its acceptance (`sent_at`) for a message without a receipt; median and 95th percentile over the
  messages reached, interpolated like PostgreSQL's percentile_cont and Excel's PERCENTILE.INC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.models import TimelinessOut
from pushsvc.core.workdays import working_days_between

# core/retry.py writes this for a temporary failure that ran out of attempts: the one kind of
# failure worth trying again later (tests/test_reports.py pins the two together).
GAVE_UP_PREFIX = "gave up after "
_GAVE_UP = re.compile(r"gave up after \d+ attempts: (.*)", re.S)
_SMTP = re.compile(r"([245]\d\d)(?: ([245]\.\d{1,3}\.\d{1,3}))?\b")
_NUMBER = re.compile(r"\d+\b")
_CODE = re.compile(r"[\w.-]{1,40}")  # a provider's status code: no spaces, short
REASON_MAX = 60
# What a kept code may not hold: an address, a bracketed mailbox, a phone number, a URL.
_CONTACT_LIKE = re.compile(r"@|<|\d{7,}|://")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BAD_DATE = "must be a date, YYYY-MM-DD"
BACKWARDS = "must not be before from"
# Far beyond any policy, and inside what a datetime can hold once shifted by the local zone.
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
OUT_OF_RANGE = f"must be between {EARLIEST} and {LATEST}"


def parse_period(raw_from: str | None, raw_to: str | None, today: date) -> tuple[date, date]:
    """The report's period from the `from` and `to` query values (YYYY-MM-DD, both included);
    by default the current year up to today. Raises ValidationFailed naming each bad field."""
    errors: list[FieldError] = []

    def parsed(name: str, raw: str | None, default: date) -> date | None:
        if not raw:
            return default
        try:
            day = date.fromisoformat(raw) if _ISO_DATE.fullmatch(raw) else None
        except ValueError:
            day = None
        if day is None or not EARLIEST <= day <= LATEST:
            errors.append(FieldError(name, BAD_DATE if day is None else OUT_OF_RANGE))
            return None
        return day

    first = parsed("from", raw_from, date(today.year, 1, 1))
    last = parsed("to", raw_to, today)
    if first and last and first > last:
        errors.append(FieldError("to", BACKWARDS))
    if errors or first is None or last is None:
        raise ValidationFailed(errors)
    return first, last


def failure_reason(error: str | None) -> tuple[str, bool]:
    """(reason, retryable) for a failed ledger row's error. The reason is a short code that groups
    like failures ("550 5.1.1", "isv.MOBILE_NUMBER_ILLEGAL", "not delivered: UNDELIV"); the
    free text after it (which may vary per recipient) is dropped. Only a temporary failure that
    ran out of attempts is retryable: a permanent refusal would be refused again."""
    if not error:
        return "unknown", False
    gave_up = _GAVE_UP.match(error)
    if gave_up:
        return f"gave up: {_code(gave_up.group(1))}"[:REASON_MAX], True
    return _code(error), False


def error_code(error: str | None) -> str | None:
    """What a ledger keeps of an outcome's error: the code (`failure_reason`'s), and whether it
    gave up after retries, never the provider's free text: an SMTP 5xx usually quotes the
    address, a gateway may quote the number, and erasure must not have to go looking for them."""
    if not error:
        return error
    gave_up = _GAVE_UP.match(error)
    code = _code(gave_up.group(1) if gave_up else error)
    if _CONTACT_LIKE.search(code):  # a reply that begins with the address itself
        code = "unknown"
    return f"{error[:gave_up.start(1)]}{code}" if gave_up else code


def _code(text: str) -> str:
    text = text.strip()
    smtp = _SMTP.match(text)
    if smtp:
        return " ".join(part for part in smtp.groups() if part)
    number = _NUMBER.match(text)  # WeChat errcodes: "43101 user refuse to accept the msg"
    if number:
        return number.group()
    head, sep, rest = text.partition(": ")
    if sep and _CODE.fullmatch(rest.strip()):
        return f"{head}: {rest.strip()}"[:REASON_MAX]  # "not delivered: UNDELIV": the code is the point
    return (head or "unknown")[:REASON_MAX]


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of sorted values, linearly interpolated between the closest ranks."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def duration(seconds: float | None) -> str:
    """How long, as a person says it: 0.4 s, 12.5 s, 3 min 12 s, 2 h 5 min, 3 d 4 h; "–" for no
    figure. Tenths under a minute: a message often arrives within the second."""
    if seconds is None:
        return "–"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if s >= size:
            return f"{s // size} {unit} {s % size // sub_size} {sub}"
    return f"{s // 60} min {s % 60} s"


class ChannelFigures(BaseModel):
    matched: int = Field(0, description="messages the fan-out wrote (one per subscriber matched on the channel)")
    sent: int = Field(0, description="accepted by the provider, whatever a receipt said afterwards")
    delivered: int = Field(0, description="confirmed by a delivery receipt (SMS; e-mail and WeChat send none)")
    failed: int = Field(0, description="given up for good")
    pending: int = Field(0, description="not final yet: queued, sending, held or digest")
    failed_by_reason: dict[str, int] = Field(default_factory=dict, description="reason code -> messages")

    def add(self, other: ChannelFigures) -> None:
        self.matched += other.matched
        self.sent += other.sent
        self.delivered += other.delivered
        self.failed += other.failed
        self.pending += other.pending
        for reason, n in other.failed_by_reason.items():
            self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + n


def combined(figures: Iterable[ChannelFigures]) -> ChannelFigures:
    total = ChannelFigures()
    for f in figures:
        total.add(f)
    total.failed_by_reason = dict(sorted(total.failed_by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    return total


class Timing(BaseModel):
    count: int = Field(description="messages timed: those sent or delivered")
    median_seconds: float | None
    p95_seconds: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        """`seconds` is sorted here, in place."""
        seconds.sort()

        def rounded(q: float) -> float | None:
            value = percentile(seconds, q)
            return None if value is None else round(value, 3)

        return cls(count=len(seconds), median_seconds=rounded(0.5), p95_seconds=rounded(0.95))


class ProviderFigures(BaseModel):
    """One SMS provider's share of the period's messages, from the provider each ledger row names
    (the one that took it, or the last one that refused it for good)."""

    provider: str = Field(description="aliyun, tencent or generic")
    messages: int = Field(description="messages the provider answered for")
    delivered: int = Field(description="of them, confirmed by its delivery receipt")
    failed: int = Field(description="of them, failed for good: refused by it, or a failed receipt")
    delivery_time: Timing = Field(description="from sent (the provider took it) to delivered (its receipt)")


class Ratings(BaseModel):
    useful: int = Field(0, description="people who said the policy page was useful")
    not_useful: int = Field(0, description="people who said it was not")

    @classmethod
    def of(cls, counts: tuple[int, int]) -> Ratings:
        return cls(useful=counts[0], not_useful=counts[1])


class AnswerTimes(BaseModel):
    """How fast the public's questions were answered, in working days (mainland calendar): a
    question answered on the day it was asked took 0."""

    asked: int = Field(0, description="questions asked in the period")
    answered: int = 0
    unanswered: int = 0
    median_working_days: float | None = None
    p95_working_days: float | None = None

    @classmethod
    def of(cls, asked_answered: Sequence[tuple[date, date | None]]) -> AnswerTimes:
        """`asked_answered`: each question's local dates, asked and answered (None: not yet)."""
        days = sorted(float(working_days_between(a, b)) for a, b in asked_answered if b is not None)
        median, p95 = percentile(days, 0.5), percentile(days, 0.95)
        return cls(asked=len(asked_answered), answered=len(days), unanswered=len(asked_answered) - len(days),
                   median_working_days=None if median is None else round(median, 1),
                   p95_working_days=None if p95 is None else round(p95, 1))


# The links that count a policy page's visitors (policies/reading.py): a message's channel, a QR
# code, or a short link that names none of them.
READ_CHANNELS = ("email", "sms", "wechat", "qr", "link")


class Reading(BaseModel):
    opened: int = Field(0, description="visitors who opened the policy's page by the channel's links, each once a day")
    reached: int | None = Field(None, description="messages of the policy the channel's provider accepted; null for "
                                "QR codes and untagged short links, which nobody sends")
    open_rate: float | None = Field(None, description="opened / reached; null when nothing was reached")


def reading(opened: dict[str, int], reached: dict[str, int]) -> dict[str, Reading]:
    """Opened / reached per channel of READ_CHANNELS; `reached`: messages accepted per channel sent by."""
    out: dict[str, Reading] = {}
    for ch in READ_CHANNELS:
        n, sent = opened.get(ch, 0), reached.get(ch)
        out[ch] = Reading(opened=n, reached=sent, open_rate=ratio(n, sent) if sent is not None else None)
    return out


class PolicyFigures(BaseModel):
    id: int
    title: str
    doc_number: str | None
    domain: str
    status: str
    published_at: datetime = Field(description="when the policy went public: publish_at if scheduled, else when it was posted")
    matched: int = Field(description="subscribers matched")
    reached: int = Field(description="subscribers with at least one message sent or delivered")
    reach_rate: float | None = Field(description="reached / matched; null when nobody matched")
    messages: ChannelFigures = Field(description="all channels together")
    by_channel: dict[str, ChannelFigures]
    time_to_delivery: Timing
    timeliness: TimelinessOut | None = Field(description="null when the policy has no produced_on")
    ratings: Ratings = Field(default_factory=Ratings, description="what the public said of its page, since it went public")
    reading: dict[str, Reading] = Field(default_factory=dict, description="opened / reached per channel (READ_CHANNELS)")


class TimelinessTotals(BaseModel):
    on_time: int
    late: int
    unknown: int = Field(description="policies without produced_on")


class ReportTotals(BaseModel):
    policies: int
    matched: int = Field(description="sum over policies: a subscriber matched by two policies counts twice")
    reached: int
    reach_rate: float | None
    messages: ChannelFigures
    by_channel: dict[str, ChannelFigures]
    time_to_delivery: Timing = Field(description="over every timed message of the period's policies")
    timeliness: TimelinessTotals
    reading: dict[str, Reading] = Field(default_factory=dict, description="opened / reached per channel, all policies")


class DaySent(BaseModel):
    day: date = Field(description="local date (Asia/Shanghai)")
    by_channel: dict[str, int] = Field(description="messages the provider accepted that day")


class DepartmentRef(BaseModel):
    id: int
    name: str


class DepartmentReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    department: DepartmentRef
    period_from: date = Field(alias="from", description="first local date of the period")
    period_to: date = Field(alias="to", description="last local date of the period, included")
    generated_at: datetime
    policies: list[PolicyFigures] = Field(description="policies that went public in the period, oldest first")
    total: ReportTotals
    sent_per_day: list[DaySent] = Field(description="the period's policies' messages by the day they were sent, every day from the first to the last")
    suppressed_by_reason: dict[str, int] = Field(
        default_factory=dict, description="the period's policies' messages not sent because the contact is suppressed, "
        "by why: hard_bounce, invalid_number, wechat_refused, reply_r, complaint")
    ratings: Ratings = Field(default_factory=Ratings, description="the period's policies' ratings together")
    questions: AnswerTimes = Field(default_factory=AnswerTimes,
                                   description="the public's questions asked in the period and how fast they were answered")
    sms_providers: list[ProviderFigures] = Field(
        default_factory=list, description="the period's policies' SMS per provider, in name order")


def totals(policies: Sequence[PolicyFigures], seconds: list[float], channels: Sequence[str]) -> ReportTotals:
    """The total row; `seconds` are every policy's timed messages together (sorted here)."""
    matched = sum(p.matched for p in policies)
    reached = sum(p.reached for p in policies)
    timed = [p.timeliness for p in policies]
    return ReportTotals(
        policies=len(policies),
        matched=matched,
        reached=reached,
        reach_rate=ratio(reached, matched),
        messages=combined(p.messages for p in policies),
        by_channel=(by_channel := {ch: combined(p.by_channel[ch] for p in policies if ch in p.by_channel)
                                   for ch in channels}),
        reading=reading({ch: sum(p.reading[ch].opened for p in policies if ch in p.reading) for ch in READ_CHANNELS},
                        {ch: f.sent for ch, f in by_channel.items()}),
        time_to_delivery=Timing.of(seconds),
        timeliness=TimelinessTotals(
            on_time=sum(1 for t in timed if t is not None and t.on_time),
            late=sum(1 for t in timed if t is not None and not t.on_time),
            unknown=sum(1 for t in timed if t is None),
        ),
    )

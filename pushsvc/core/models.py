"""Pydantic models at the HTTP boundary; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import SkipJsonSchema

from pushsvc.core.errors import FieldError
from pushsvc.core.timeliness import Timeliness

Frequency = Literal["immediate", "daily", "weekly"]
Locale = Literal["zh-CN", "zh-HK", "en"]
Disclosure = Literal["proactive", "on_request", "not_disclosed"]
Priority = Literal["normal", "urgent"]
DeliveryStatus = Literal["queued", "sending", "sent", "delivered", "failed", "held", "digest", "unknown", "suppressed"]
Url = Field(default=None, max_length=1000, pattern=r"^https?://\S+$")
Name = Annotated[str, Field(max_length=64)]  # a catalogue name: audience group, attribute, domain, channel


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepartmentIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    domains: list[Name] = Field(min_length=1, max_length=26)
    contact_email: str | None = Field(default=None, max_length=254)


class DepartmentOut(BaseModel):
    id: int
    name: str
    domains: list[str]
    api_key: str = Field(description="Shown this once; only its hash is stored.")


class UrgentRightIn(Strict):
    may_send_urgent: bool = Field(description='whether the department may publish policies with "priority": "urgent"')


class UrgentRightOut(BaseModel):
    department_id: int
    may_send_urgent: bool


class KeyIn(Strict):
    # Something to read in a list: not blank, no control characters (PostgreSQL refuses NUL).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
                      description="what the key is for, e.g. 'case system'")
    kind: Literal["live", "test"] = Field(default="live", description="test keys (psk_test_…) reach only simulated contacts")


class KeyInfo(BaseModel):
    id: int
    name: str
    kind: str
    prefix: str = Field(description="the key's first characters, to recognise it by")
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute")
    revoked_at: datetime | None


class KeyOut(BaseModel):
    id: int
    name: str
    kind: str
    api_key: str = Field(description="Shown this once; only its hash is stored.")


class KeyList(BaseModel):
    items: list[KeyInfo]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="admin, department:<id>:key:<key id>, subscriber:<id> (the person) or cli")
    action: str
    subscriber_id: int | None
    request_id: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


class WechatContact(Strict):
    webhook_url: str | None = Field(default=None, max_length=500)
    openid: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]{6,64}$")


class QuietHours(Strict):
    start: str = Field(max_length=5, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(max_length=5, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


# A department's own reference for a record: printable, not blank, unique within the department.
ExternalId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
                                  description="the department's own reference, unique within it")]


class SubscriberIn(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    wechat: WechatContact | None = None
    audiences: dict[Name, Annotated[dict[Name, Any], Field(max_length=50)]] = Field(
        min_length=1, max_length=20, description="group slug -> attributes")
    domains: list[Name] = Field(min_length=1, max_length=27, description='domain slugs, or ["*"] for all')
    channels: list[Name] = Field(min_length=1, max_length=10)
    frequency: Frequency = "immediate"
    locale: Locale = "zh-CN"
    quiet_hours: QuietHours | None = None
    external_id: ExternalId | None = None


class SubscriberPatch(Strict):
    """PATCH /v1/subscribers/{id}: only the fields present change (null clears an optional one); the
    record as changed is then checked as POST /v1/subscribers checks a new one."""

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    wechat: WechatContact | None = None
    audiences: Annotated[dict[Name, Annotated[dict[Name, Any], Field(max_length=50)]], Field(
        min_length=1, max_length=20, description="group slug -> attributes (replaces them all)")] | SkipJsonSchema[None] = None
    domains: Annotated[list[Name], Field(min_length=1, max_length=27)] | SkipJsonSchema[None] = None
    channels: Annotated[list[Name], Field(min_length=1, max_length=10)] | SkipJsonSchema[None] = None
    frequency: Frequency | SkipJsonSchema[None] = None
    locale: Locale | SkipJsonSchema[None] = None
    quiet_hours: QuietHours | None = None
    external_id: ExternalId | None = None


class SubscriberOut(BaseModel):
    id: int
    status: str
    name: str | None
    email: str | None
    phone: str | None
    wechat: WechatContact | None
    audiences: dict[str, dict[str, Any]]
    domains: list[str]
    channels: list[str]
    frequency: str
    locale: str
    quiet_hours: QuietHours | None
    created_at: datetime
    external_id: str | None = None


class SubscriberPage(BaseModel):
    items: list[SubscriberOut]
    next_cursor: str | None


class ImportError_(BaseModel):
    row: int
    errors: list[dict[str, str]]


class ImportResult(BaseModel):
    imported: int
    merged: int = Field(description="rows that matched an existing subscriber and were merged into it")
    rejected: list[ImportError_]
    rejected_more: int = Field(0, description="bad rows beyond the first 1,000 listed in `rejected`, counted")


class PolicyIn(Strict):
    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(min_length=1, max_length=4000)
    body: str = Field(default="", max_length=200_000)
    domain: str = Field(max_length=64)
    doc_number: str | None = Field(default=None, max_length=120)
    url: str | None = Url
    interpretation_url: str | None = Url
    disclosure: Disclosure = "proactive"
    produced_on: date | None = None
    effective_on: date | None = None
    expires_on: date | None = None
    publish_at: AwareDatetime | None = None
    targeting: dict[str, Any] = Field(max_length=8, description="audiences and a where predicate")
    channels: list[Name] = Field(min_length=1, max_length=10)
    notify_on_lapse: bool = Field(default=True, description="tell the people who received it when it lapses")
    priority: Priority = Field(default="normal", description="urgent (a right the admin grants): sent at once to "
                               "everyone it matches, digest subscribers and quiet hours included, on a queue of its own")
    fallback: dict[Name, Name] | None = Field(default=None, max_length=10, description='channel -> the channel tried '
                                              'next when a message on it fails for good, e.g. {"wechat": "sms"}')


# What a revision may change: the text, links and dates. Who it targets and how it is sent are not
# revised (the people told of it could no longer be the ones it is for): publish a new policy.
REVISABLE_FIELDS = ("title", "summary", "body", "doc_number", "url", "interpretation_url", "produced_on",
             "effective_on", "expires_on", "notify_on_lapse")


class PolicyRevisionIn(Strict):
    """Only the fields that change; null clears an optional one. The defaults are never used as
    values: only the fields present in the body are applied (`model_fields_set`)."""

    # These four can be changed but not cleared: null is refused (and the schema does not offer it).
    title: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=300)
    summary: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=4000)
    body: str | SkipJsonSchema[None] = Field(default=None, max_length=200_000)
    doc_number: str | None = Field(default=None, max_length=120)
    url: str | None = Url
    interpretation_url: str | None = Url
    produced_on: date | None = None
    effective_on: date | None = None
    expires_on: date | None = None
    notify_on_lapse: bool | SkipJsonSchema[None] = None

    @field_validator("title", "summary", "body", "notify_on_lapse", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # Runs only for values given, never for the defaults.
        if v is None:
            raise ValueError("cannot be null")
        return v


class RepealIn(Strict):
    reason: str = Field(min_length=1, max_length=1000)
    repealed_on: date | None = Field(default=None, description="the date it stops applying: today (the default) or earlier")


class ChannelCounts(BaseModel):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    held: int = 0
    unknown: int = Field(default=0, description="the provider may have taken them and could not say (no reply "
                         "came); never sent again: a receipt or a query to the provider settles them")
    suppressed: int = Field(default=0, description="not sent: the contact is on the suppression list (a hard "
                            "bounce, an invalid number, a WeChat refusal, an R reply); not failures")


class FieldChange(BaseModel):
    field: str
    before: Any = None
    after: Any = None


class RevisionOut(BaseModel):
    revision: int
    created_at: datetime
    changes: list[FieldChange]


class NoticeOut(BaseModel):
    seq: int = Field(description="the ledger's notice number")
    kind: Literal["revised", "repealed", "lapsed"]
    revision: int
    created_at: datetime
    deliveries: dict[str, ChannelCounts]


class TimelinessOut(BaseModel):
    produced_on: date
    published_on: date = Field(description="local date the policy went public")
    working_days: int = Field(description="working days after produced_on up to and including published_on")
    limit: int = Field(description="working days allowed (20)")
    on_time: bool
    late_by: int = Field(description="working days beyond the limit; 0 when on time")

    @classmethod
    def of(cls, t: Timeliness) -> TimelinessOut:
        return cls(produced_on=t.produced_on, published_on=t.published_on, working_days=t.working_days,
                   limit=t.limit, on_time=t.within, late_by=t.late_by)


class PolicyOut(BaseModel):
    id: int
    status: str = Field(description="scheduled | publishing | published | repealed | lapsed")
    department_id: int
    title: str
    summary: str
    domain: str
    doc_number: str | None
    url: str | None
    interpretation_url: str | None
    disclosure: str
    produced_on: date | None
    effective_on: date | None
    expires_on: date | None
    publish_at: datetime | None
    published_at: datetime | None
    targeting: dict[str, Any]
    channels: list[str]
    matched: int
    page_url: str
    deliveries: dict[str, ChannelCounts] = Field(description="the policy's own messages (notices are counted under notices)")
    created_at: datetime
    revision: int
    revisions: list[RevisionOut]
    notify_on_lapse: bool
    repealed_on: date | None
    repeal_reason: str | None
    notices: list[NoticeOut]
    timeliness: TimelinessOut | None = Field(description="null without produced_on")
    test: bool = Field(default=False, description="published with a test key: the simulator answered for every "
                       "recipient, nothing left pushsvc, and no report counts it")
    priority: Priority = "normal"
    fallback: dict[str, str] | None = None


FEWER_THAN_5 = "fewer than 5"
# A count of people as a department is shown it: the number, or "fewer than 5" when it is 1 to 4
# and some of those records were supplied by others (another department, the admin or the person).
Count = Annotated[int | Literal["fewer than 5"], Field(
    description='the number of subscribers, or "fewer than 5" when it is below 5 and the calling department '
                "did not supply all of them")]


class PreviewOut(BaseModel):
    """Counts over every subscriber the policy would reach, whoever supplied them; a count below 5
    that includes others' records is the string "fewer than 5" instead of a number."""

    total: Count
    by_channel: dict[str, Count]
    by_audience: dict[str, Count]


class DeliveryOut(BaseModel):
    id: int
    notice: int = Field(description="0: the policy itself; n: its n-th lifecycle notice")
    subscriber_id: int
    channel: str
    status: str
    attempts: int
    error: str | None
    updated_at: datetime
    fallback_of: int | None = Field(default=None, description="the row (id) whose failure for good this one falls "
                                    "back from, on the policy's fallback channel")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class ExplainOut(BaseModel):
    """Each rule of the match, passed (✓) or failed (✗). The subscriber's values (status, groups,
    attribute values, channels) appear only for the admin and for records the calling department
    supplied; for any other id, one that does not exist included, the lines say pass or fail only."""

    matched: bool
    reasons: list[str]


class ProblemField(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemField] | None = None


def field_path(loc: tuple[int | str, ...], root: str = "") -> str:
    """pydantic's ('a', 0, 'b') -> 'a[0].b'."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def pydantic_errors(exc: ValidationError, root: str = "") -> list[FieldError]:
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        errors.append(FieldError(field_path(loc, root) or root or "body", message))
    return errors


# -- cases (issue 6) -------------------------------------------------------------------------------

from pushsvc.core.case_states import CaseStatus  # noqa: E402  (kept with the models that use it)


class ApplicantIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    wechat_openid: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]{6,64}$")


class CaseIn(Strict):
    case_no: str = Field(min_length=1, max_length=64, pattern=r"^[^/\\?#%\s]+$",
                         description="unique within the department; no slash, ?, #, % or spaces")
    service_item: str = Field(min_length=1, max_length=200)
    applicant: ApplicantIn
    channels: list[Name] = Field(default_factory=lambda: ["sms"], min_length=1, max_length=3)
    time_limit_days: int | None = Field(default=None, ge=1, le=365, description="promised time in working days")
    locale: Locale = "zh-CN"


class CaseEventIn(Strict):
    event_id: str = Field(min_length=1, max_length=100)
    status: CaseStatus
    occurred_at: AwareDatetime
    note: str | None = Field(default=None, max_length=2000)


class CaseEventOut(BaseModel):
    event_id: str
    seq: int = Field(description="arrival order within the case")
    status: str
    occurred_at: datetime
    note: str | None
    applied: bool = Field(description="false: older than the case's latest event; recorded, moved nothing, sent nothing")
    notifications: dict[str, str] = Field(default_factory=dict, description="channel -> queued|held|sent|failed")


class CaseOut(BaseModel):
    case_no: str
    service_item: str
    status: str
    allowed_next: list[str]
    channels: list[str]
    locale: str
    time_limit_days: int | None
    due_on: date | None
    overdue: bool
    page_url: str
    short_url: str
    created_at: datetime
    events: list[CaseEventOut]


class CaseEventResult(BaseModel):
    duplicate: bool
    case_status: str
    event: CaseEventOut


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None

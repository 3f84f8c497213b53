"""Pydantic models at the HTTP boundary; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from pushsvc.core.errors import FieldError

Frequency = Literal["immediate", "daily", "weekly"]
Locale = Literal["zh-CN", "zh-HK", "en"]
Disclosure = Literal["proactive", "on_request", "not_disclosed"]
DeliveryStatus = Literal["queued", "sending", "sent", "delivered", "failed", "held"]
Url = Field(default=None, max_length=1000, pattern=r"^https?://\S+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepartmentIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    domains: list[str] = Field(min_length=1, max_length=26)
    contact_email: str | None = Field(default=None, max_length=254)


class DepartmentOut(BaseModel):
    id: int
    name: str
    domains: list[str]
    api_key: str = Field(description="Shown this once; only its hash is stored.")


class WechatContact(Strict):
    webhook_url: str | None = Field(default=None, max_length=500)
    openid: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]{6,64}$")


class QuietHours(Strict):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class SubscriberIn(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    wechat: WechatContact | None = None
    audiences: dict[str, dict[str, Any]] = Field(min_length=1, description="group slug -> attributes")
    domains: list[str] = Field(min_length=1, max_length=27, description='domain slugs, or ["*"] for all')
    channels: list[str] = Field(min_length=1, max_length=10)
    frequency: Frequency = "immediate"
    locale: Locale = "zh-CN"
    quiet_hours: QuietHours | None = None


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


class ImportError_(BaseModel):
    row: int
    errors: list[dict[str, str]]


class ImportResult(BaseModel):
    imported: int
    merged: int = Field(description="rows that matched an existing subscriber and were merged into it")
    rejected: list[ImportError_]


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
    targeting: dict[str, Any]
    channels: list[str] = Field(min_length=1, max_length=10)


class ChannelCounts(BaseModel):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    held: int = 0


class PolicyOut(BaseModel):
    id: int
    status: str
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
    deliveries: dict[str, ChannelCounts]
    created_at: datetime


class PreviewOut(BaseModel):
    total: int
    by_channel: dict[str, int]
    by_audience: dict[str, int]


class DeliveryOut(BaseModel):
    id: int
    subscriber_id: int
    channel: str
    status: str
    attempts: int
    error: str | None
    updated_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class ExplainOut(BaseModel):
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
    channels: list[str] = Field(default_factory=lambda: ["sms"], min_length=1, max_length=3)
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

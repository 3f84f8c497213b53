"""The small interface every SMS provider implements: send a batch, ask what became of a request,
and read its receipt and reply pushes. A provider speaks one wire protocol and knows nothing of
the ledger; `SmsChannel` (pushsvc.channels.sms) picks providers, in the order `failover` gives,
and turns what they say into outcomes."""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal

import aiohttp

from pushsvc.settings import Settings

_ERROR_MAX = 300


@dataclass(frozen=True)
class Batch:
    """One request: the same text (template parameters) to up to `max_numbers` national numbers."""

    out_id: str  # our id of the request, carried by the provider into receipts and queries
    numbers: list[str]
    content: str
    url: str
    opt_out: str


@dataclass(frozen=True)
class Verdict:
    """What a provider said of one number: `sent` (with its message's ref), `failed` for good, or
    `retry` later; `held`: the provider's daily limit for the number is reached (it sends again
    after local midnight); `unknown`: a query cannot tell yet."""

    status: Literal["sent", "failed", "retry", "held", "unknown"]
    ref: str | None = None
    error: str | None = None


class Refused(Exception):
    """The provider answered and refused the whole request; nothing was sent. `failover`: the fault
    is the provider's (down, throttled, out of credit, our credentials there), so the next provider
    may take the batch; `permanent`: no provider will (a malformed request). `per_number`: the code
    names one bad number in a batch (the batch is then sent a number at a time)."""

    def __init__(self, code: str, message: str = "", *, failover: bool = False, permanent: bool = False,
                 per_number: bool = False) -> None:
        super().__init__(f"{code}: {message}".strip(": ")[:_ERROR_MAX])
        self.code = code
        self.failover = failover
        self.permanent = permanent
        self.per_number = per_number


class Unreachable(Exception):
    """The request never reached the provider: safe to send elsewhere or again."""


class NoReply(Exception):
    """The request went out and no answer came: the provider may have taken it."""


@dataclass(frozen=True)
class ReceiptIn:
    """A delivery receipt as `pushsvc.store.receipts.Receipt` reads it."""

    message_id: str
    delivered: bool
    error_code: str | None
    reported_at: datetime | None
    out_id: str | None
    phone_number: str | None


@dataclass(frozen=True)
class ReplyIn:
    phone_number: str
    content: str


def number_mark(key: str, number: str) -> str:
    """A keyed mark of a national number: refs find a message by it without the ledger holding it."""
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()[:16]


def national_number(phone: str) -> str:
    """'+8613800138000', '8613800138000' → '13800138000': providers take and report mainland numbers
    without the country code."""
    phone = phone.strip()
    for prefix in ("+86", "0086", "86"):
        if phone.startswith(prefix) and len(phone) - len(prefix) == 11:
            return phone[len(prefix):]
    return phone


def reason(code: str, message: str = "") -> str:
    return f"{code}: {message}".strip(": ")[:_ERROR_MAX]


class SmsProvider(ABC):
    """One provider account. Made once per channel from the settings; cheap, stateless."""

    name: ClassVar[str]
    max_numbers: ClassVar[int]
    can_report: ClassVar[bool] = False  # `reports` can tell of sent messages (else only pushes do)
    # The answer its pushes expect (the provider retries a push answered otherwise).
    callback_answer: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def mark_key(self) -> str:
        return self.settings.secret_key

    def unknown_request(self, out_id: str) -> str:
        """The request part of an `unknown` row's ref: the provider's name and our out_id."""
        return f"{self.name}:{out_id}"

    @abstractmethod
    def missing(self) -> str | None:
        """The setting this provider still needs (its name), or None when it can send."""

    @abstractmethod
    async def send_batch(self, session: aiohttp.ClientSession, batch: Batch) -> dict[str, Verdict]:
        """A verdict per number of `batch`; raises Refused, Unreachable or NoReply."""

    @abstractmethod
    async def query(self, session: aiohttp.ClientSession, out_id: str, numbers: list[str],
                    sent_on: date) -> dict[str, Verdict] | None:
        """What became of request `out_id` (sent on `sent_on`, local date) for these numbers: a
        verdict per number the provider took, {} when it took none of them, None when it cannot
        tell. Never raises."""

    async def reports(self, session: aiohttp.ClientSession,
                      asked: list[tuple[str, str, date]]) -> list[ReceiptIn] | None:
        """Receipts the provider can tell of messages whose pushed receipt never came: `asked` is
        (the row's ref, national number, day sent) each; a receipt for each one it has a final
        status for; None when it cannot tell. The default: providers that only push them."""
        return None

    def receipts(self, body: bytes) -> list[ReceiptIn]:
        """The receipts of a status-report push; ValueError when it is not one."""
        raise ValueError(f"{self.name} receipts come to /v1/receipts/sms")

    def replies(self, body: bytes) -> list[ReplyIn]:
        """The replies of a reply push; ValueError when it is not one."""
        raise ValueError(f"{self.name} replies come to /v1/inbound/sms")


def callback_path(provider: str, token: str, kind: Literal["report", "reply"]) -> str:
    """Where `provider` pushes receipts (`report`) or replies (`reply`): the URL to register in its
    console, under PUSHSVC_PUBLIC_URL. The token (PUSHSVC_SMS_CALLBACK_TOKEN) keeps others out:
    neither cloud signs its pushes."""
    return f"/v1/callbacks/sms/{provider}/{token}/{kind}"

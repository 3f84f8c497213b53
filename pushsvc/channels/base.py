"""The one small interface every channel implements, and the values that cross it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal, Protocol


class HasContacts(Protocol):
    """Anything carrying a subscriber's contacts: a Recipient, or a subscriber being validated."""

    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def wechat_openid(self) -> str | None: ...
    @property
    def wechat_webhook(self) -> str | None: ...


@dataclass(frozen=True)
class Recipient:
    """One delivery row joined with the subscriber's current contacts."""

    delivery_id: int
    subscriber_id: int
    name: str | None
    locale: str
    email: str | None = None
    phone: str | None = None
    wechat_openid: str | None = None
    wechat_webhook: str | None = None
    # The subscriber's own quiet hours (minutes after local midnight); None: the service default.
    quiet_start: int | None = None
    quiet_end: int | None = None


class Message(Protocol):
    """What a channel needs of any message; templates `<channel>/<kind>.<locale>.*` get all of its
    fields. Policies and case updates are the two kinds of message so far."""

    @property
    def kind(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def short_url(self) -> str: ...
    @property
    def key(self) -> str:
        """What the content is about ("policy:12"): render caches and Content-IDs use it."""
    @property
    def qr_url(self) -> str:
        """The QR image of the page the message links to."""
    @property
    def to_subscriber(self) -> bool:
        """Sent because someone subscribed (so it carries a way to leave), not to an applicant."""


@dataclass(frozen=True)
class PolicyMessage:
    """What a policy push says, whatever the channel. Rendering turns it into a channel's bytes."""

    policy_id: int
    kind: str  # template family: "policy"; revisions, repeals, digests reuse the same road
    version: str  # changes whenever the content does, so cached renderings stay correct
    title: str
    summary: str
    department: str
    domain: str
    doc_number: str | None
    page_url: str
    short_url: str  # /s/{code}: what SMS, WeChat and QR codes carry
    source_url: str | None
    interpretation_url: str | None
    produced_on: date | None
    effective_on: date | None
    expires_on: date | None

    @property
    def key(self) -> str:
        return f"policy:{self.policy_id}"

    @property
    def qr_url(self) -> str:
        return f"{self.page_url}/qr.png"

    @property
    def to_subscriber(self) -> bool:
        return True


OutcomeStatus = Literal["sent", "retry", "failed", "held"]


@dataclass(frozen=True)
class Outcome:
    """`retry`: temporary, try again later; `failed`: permanent, never retried; `held`: not now,
    not before `not_before` (quiet hours). `error` keeps the reason."""

    delivery_id: int
    status: OutcomeStatus
    error: str | None = None
    provider_ref: str | None = None
    not_before: datetime | None = None


class Channel(ABC):
    """A way to reach people. Long-lived: `start` opens connections, `close` releases them."""

    name: ClassVar[str]

    @staticmethod
    @abstractmethod
    def address(contacts: HasContacts) -> str | None:
        """The contact this channel would use, or None if there is none. Static, because
        subscriber validation asks it too ("channel sms needs a phone number")."""

    def honours_quiet_hours(self, recipient: Recipient) -> bool:
        """Whether a message to this recipient waits for the end of their quiet hours."""
        return False

    @abstractmethod
    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        """Exactly what would be sent, for GET /v1/policies/{id}/render (recipient values shown
        as placeholders)."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abstractmethod
    async def send(self, message: Message, recipients: list[Recipient]) -> list[Outcome]:
        """Send one message to many; one Outcome per recipient, in any order. Never raises for a
        single recipient's failure: that is an Outcome."""

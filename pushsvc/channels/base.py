"""The one small interface every channel implements, and the values that cross it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal, Protocol


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


@dataclass(frozen=True)
class PolicyMessage:
    """What a policy push says, whatever the channel. Rendering turns it into a channel's bytes."""

    policy_id: int
    kind: str  # template family: "policy" now; revisions, repeals, digests reuse the same road
    version: str  # changes whenever the content does, so cached renderings stay correct
    title: str
    summary: str
    department: str
    domain: str
    doc_number: str | None
    page_url: str
    source_url: str | None
    interpretation_url: str | None
    produced_on: date | None
    effective_on: date | None
    expires_on: date | None


OutcomeStatus = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class Outcome:
    """`retry`: temporary, try again later; `failed`: permanent, never retried. `error` keeps the reason."""

    delivery_id: int
    status: OutcomeStatus
    error: str | None = None
    provider_ref: str | None = None


class Channel(ABC):
    """A way to reach people. Long-lived: `start` opens connections, `close` releases them."""

    name: ClassVar[str]

    @staticmethod
    @abstractmethod
    def address(contacts: HasContacts) -> str | None:
        """The contact this channel would use, or None if there is none. Static, because
        subscriber validation asks it too ("channel sms needs a phone number")."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abstractmethod
    async def send(self, message: PolicyMessage, recipients: list[Recipient]) -> list[Outcome]:
        """Send one message to many; one Outcome per recipient, in any order. Never raises for a
        single recipient's failure: that is an Outcome."""

"""The message contract: who a message goes to (`Recipient`), what came of it (`Outcome`), and every
kind of message the service sends, as plain frozen data.

Senders build messages; channels render them (templates `<channel>/<kind>.<locale>.*` get all of a
kind's fields, `vars(message)`) and answer with one Outcome per recipient. Nothing here does I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal, Protocol

from pushsvc.core.links import NO_SHORT_LINKS, ShortLinks, Via, tagged

# -- who, and what came of it -----------------------------------------------------------------------


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
    """One person a message goes to, with their contacts as they are now. `delivery_id` names the
    ledger row the outcome is for (a delivery, a case notification; any number when there is none)."""

    delivery_id: int
    subscriber_id: int  # 0: not a subscriber (an applicant, a department)
    name: str | None
    locale: str
    email: str | None = None
    phone: str | None = None
    wechat_openid: str | None = None
    wechat_webhook: str | None = None
    # The subscriber's own quiet hours (minutes after local midnight); None: the service default.
    quiet_start: int | None = None
    quiet_end: int | None = None


OutcomeStatus = Literal["sent", "retry", "failed", "held", "unknown", "untried"]
# An `unknown` outcome's provider_ref: "<request>#<recipient>", our own id of the provider request
# and a mark of the recipient in it, so that a later query of the request (`Channel.resolve`) or a
# receipt naming both settles the row.
UNKNOWN_REF_SEPARATOR = "#"


@dataclass(frozen=True)
class Outcome:
    """`retry`: temporary, try again later; `failed`: permanent, never retried; `held`: not now,
    not before `not_before` (quiet hours, a provider's pace); `unknown`: the provider may have taken
    it (a timeout after the request went out) and could not say: never sent again, settled later
    by a receipt or a query; `untried`: not sent because the job's send budget ran out first (the
    row goes back to the queue, due at once, no attempt counted). `error` keeps the reason."""

    delivery_id: int
    status: OutcomeStatus
    error: str | None = None
    provider_ref: str | None = None
    not_before: datetime | None = None
    provider: str | None = None  # which of the channel's providers took it (SMS: aliyun, tencent, generic)


# -- what a channel needs of any message ----------------------------------------------------------


class Message(Protocol):
    """What a channel needs of any message (every kind below has it)."""

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
        """The QR image of the page the message links to ("" when it links to none)."""
    @property
    def to_subscriber(self) -> bool:
        """Sent because someone subscribed (so it carries a way to leave and waits out their quiet
        hours), not to an applicant, a department or someone who asked for this one message."""

    def link_for(self, via: Via) -> str:
        """The link `via`'s reader follows to the message's page (BaseMessage.link_for)."""

    def fields_for(self, via: Via) -> dict[str, Any]:
        """What `via`'s templates get (BaseMessage.fields_for)."""


class BaseMessage(ABC):
    """What every kind shares: its key, the page it links to and that page's QR image, and whether
    it goes to a subscriber. A kind is a frozen dataclass over this base; its fields, and only
    they, are what the templates get."""

    kind: str  # the template family
    version: str  # changes whenever the content does, so cached renderings stay correct
    title: str
    short_url: str  # /s/{code}: what SMS, WeChat and QR codes carry

    to_subscriber: ClassVar[bool] = True

    @property
    @abstractmethod
    def key(self) -> str:
        """What the content is about ("policy:12"): render caches and Content-IDs use it."""

    @property
    def page(self) -> str:
        """The page the message links to; "" for none."""
        return ""

    @property
    def qr_url(self) -> str:
        return f"{self.page}/qr.png" if self.page else ""

    def link_for(self, via: Via) -> str:
        """The link `via`'s reader follows to the page: an SMS's or a WeChat message's one link, what
        a QR code encodes (`qr`, e-mail's image too), e-mail's link to the page. Channels ask here,
        never read `short_url` themselves, so that a kind whose visits count per channel (a policy)
        can answer each its own. By default: the one short link for all."""
        return self.short_url

    def fields_for(self, via: Via) -> dict[str, Any]:
        """The fields `via`'s templates get: the kind's fields, its links as `via`'s reader follows them."""
        return dict(vars(self))


class _ReadPerChannel(BaseMessage):
    """A kind whose page counts its readers per channel (policies/reading.py): each reader is given
    a link naming the channel. E-mail has room for the page's own address with `?via=email`; the
    others (an SMS has no room for more) get a short link of their own, issued with the page's."""

    short_links: ShortLinks  # "" for a reader without one: it gets `short_url`, counted as `link`

    def link_for(self, via: Via) -> str:
        return tagged(self.page, via) if via == "email" else self.short_links.get(via) or self.short_url

    def _links_for(self, via: Via) -> dict[str, str]:
        # E-mail shows its short link only as the QR image, which a phone scans: the QR's.
        return {"short_url": self.link_for("qr" if via == "email" else via)}


# -- policies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyMessage(_ReadPerChannel):
    """What a policy push says, whatever the channel. Rendering turns it into a channel's bytes."""

    policy_id: int
    kind: str  # "policy"; its lifecycle notices are NoticeMessage
    version: str
    title: str
    summary: str
    department: str
    domain: str
    doc_number: str | None
    page_url: str
    short_url: str
    source_url: str | None
    interpretation_url: str | None
    produced_on: date | None
    effective_on: date | None
    expires_on: date | None
    # Published with a test key: the simulator answers for every recipient (pushsvc.delivery.simulator).
    test: bool = False
    # Its short link per reader (issued at publish); a reader without one gets `short_url`.
    short_links: ShortLinks = NO_SHORT_LINKS

    @property
    def key(self) -> str:
        return f"policy:{self.policy_id}"

    @property
    def page(self) -> str:
        return self.page_url

    def fields_for(self, via: Via) -> dict[str, Any]:
        return vars(self) | self._links_for(via) | {"page_url": tagged(self.page_url, via)}


@dataclass(frozen=True)
class NoticeMessage(PolicyMessage):
    """A policy's lifecycle notice (`kind` policy_revised, policy_repealed or policy_lapsed) for the
    people who received it: the policy as it is now, and what the notice adds to it."""

    notice: int = 0
    changes: tuple[dict[str, Any], ...] = ()  # revised: {field, before?, after?}
    reason: str = ""  # repealed
    repealed_on: date | None = None  # repealed

    @property
    def key(self) -> str:
        # Not the policy's key: its renderings and the notice's must not share a cache entry.
        return f"policy:{self.policy_id}:notice:{self.notice}"


@dataclass(frozen=True)
class DigestMessage(_ReadPerChannel):
    """One digest for the subscribers whose lists are the same, in one locale (its `title`)."""

    digest_id: int
    title: str
    period: str  # daily | weekly
    period_start: date
    period_end: date
    policies: tuple[dict[str, Any], ...]  # {title, department, doc_number, page_url, short_url}
    digest_url: str
    short_url: str
    kind: str = "digest"
    version: str = "1"  # a digest never changes: its key alone names the content
    # Its page's short link per reader; the page passes the reader's channel on to the policies' links.
    short_links: ShortLinks = NO_SHORT_LINKS

    @property
    def key(self) -> str:
        return f"digest:{self.digest_id}"

    def fields_for(self, via: Via) -> dict[str, Any]:
        # Each policy listed is opened from `via`: its page's address naming the channel (WeChat shows
        # a link's title, not its address, so it has room for it too).
        listed = tuple(p | {"page_url": tagged(p["page_url"], via), "short_url": tagged(p["page_url"], via)}
                       for p in self.policies)
        return vars(self) | self._links_for(via) | {"digest_url": tagged(self.digest_url, via), "policies": listed}

    @property
    def page(self) -> str:
        return self.digest_url


# -- cases ----------------------------------------------------------------------------------------


class _AboutACase(BaseMessage):
    """Messages about a case link to its page, and nobody subscribed to them: there is nothing to
    unsubscribe from."""

    page_url: str
    to_subscriber: ClassVar[bool] = False

    @property
    def page(self) -> str:
        return self.page_url


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


# -- asked for on the self-service pages ------------------------------------------------------------


@dataclass(frozen=True)
class _OneOff(BaseMessage):
    """A message for one person, made for them alone: its key is never shared with another. It
    links to no page of its own (WeChat, which would show one, does not carry these)."""

    kind: str  # confirmation | manage_link
    nonce: str
    title: str
    short_url: str  # the e-mail's QR and the SMS's one link
    expires_at: datetime  # local time
    code: str  # SMS only; "" in an e-mail
    valid_minutes: int
    version: str = "1"

    # Nothing to unsubscribe from: the person is not subscribed yet, or asked for this one message.
    to_subscriber: ClassVar[bool] = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.nonce}"


@dataclass(frozen=True)
class ConfirmationMessage(_OneOff):
    confirm_url: str = ""


@dataclass(frozen=True)
class ManageLinkMessage(_OneOff):
    manage_url: str = ""

"""The one small interface every channel implements; the values that cross it are the core's
message contract (`pushsvc.core.messages`)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from pushsvc.core.messages import HasContacts, Message, Outcome, Recipient
from pushsvc.settings import Settings

# How a channel tells the send step an outcome as soon as it is known, so that the step can record
# it before the whole batch is done: a job stopped or killed then keeps what the provider accepted.
Report = Callable[[Outcome], None]


def no_report(outcome: Outcome) -> None:
    """For a caller that only reads the outcomes `send` returns."""


def send_deadline(settings: Settings) -> float:
    """The deadline of a send starting now (the event loop's clock): the job's send budget."""
    return asyncio.get_running_loop().time() + settings.send_budget_seconds


class Channel(ABC):
    """A way to reach people. Long-lived: `start` opens connections, `close` releases them."""

    name: ClassVar[str]

    @staticmethod
    @abstractmethod
    def address(contacts: HasContacts) -> str | None:
        """The contact this channel would use, or None if there is none. Static, because
        subscriber validation asks it too ("channel sms needs a phone number")."""

    def honours_quiet_hours(self, recipient: Recipient) -> bool:
        """Whether a message to this subscriber waits for the end of their quiet hours."""
        return False

    @abstractmethod
    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        """Exactly what would be sent, for GET /v1/policies/{id}/render (recipient values shown
        as placeholders)."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def resolve(self, request: str) -> dict[str, Outcome] | None:
        """What became of a provider request whose rows are `unknown` (`request`: their provider_ref
        before `UNKNOWN_REF_SEPARATOR`): an outcome (delivery_id 0) per row ref the provider
        reports, a row ref left out was not taken; None while the provider cannot tell. The default
        is for providers without a query (SMTP): None, the receipts alone can settle them."""
        return None

    @abstractmethod
    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        """Send one message to many; one Outcome per recipient, in any order. Never raises for a
        single recipient's failure: that is an Outcome. Called by the send step
        (`pushsvc.delivery.send`) only.

        `deadline` (the event loop's clock; None: `send_deadline`): no message, call or request
        starts after it; the recipients it leaves are `untried` (no attempt spent). Each outcome
        is also given to `report` as soon as it is known; the list returned holds them all."""

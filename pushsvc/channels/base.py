"""The one small interface every channel implements; the values that cross it are the core's
message contract (`pushsvc.core.messages`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pushsvc.core.messages import HasContacts, Message, Outcome, Recipient


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

    @abstractmethod
    async def send(self, message: Message, recipients: list[Recipient]) -> list[Outcome]:
        """Send one message to many; one Outcome per recipient, in any order. Never raises for a
        single recipient's failure: that is an Outcome. Called by the send step
        (`pushsvc.delivery.send`) only."""

"""The simulator: outcomes for messages that must not leave pushsvc, decided by the send step before
any channel is called, so that a department can try its integration end to end.

- With any key, three e-mail addresses of the reserved `.invalid` domain: `delivered@…` is sent
  then delivered, `temporary-failure@…` fails for now on every try (until the retries give up,
  failed), `permanent-failure@…` fails for good at once.
- A policy published with a test key (`policies.test`) is simulated for every recipient: phone
  numbers ending 0001 delivered, 0002 a temporary failure, 0003 a permanent one; the simulated
  addresses as above; every other contact (e-mail, number, WeChat) delivered.

Simulated messages wait for no quiet hours (nobody is woken) and count in no metric of sends.
A delivered one is written `sent` under a reference of its own, then moved to `delivered` by a
receipt in the same write, as a provider's would.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.clock import now
from pushsvc.core.messages import Message, Outcome, Recipient
from pushsvc.store.receipts import apply_receipts

PROVIDER = "simulator"  # the ledger's provider of a simulated message
REF_PREFIX = "sim-"  # and its provider_ref's start
DOMAIN = "simulator.pushsvc.invalid"
Fate = Literal["delivered", "temporary", "permanent"]
EMAILS: dict[str, Fate] = {
    f"delivered@{DOMAIN}": "delivered",
    f"temporary-failure@{DOMAIN}": "temporary",
    f"permanent-failure@{DOMAIN}": "permanent",
}
PHONE_ENDINGS: dict[str, Fate] = {"0001": "delivered", "0002": "temporary", "0003": "permanent"}

def fate(channel: str, recipient: Recipient, test: bool) -> Fate | None:
    """What the simulator does with this recipient on `channel`; None: it goes to the channel."""
    address = CHANNEL_CONTACTS[channel](recipient) if channel in CHANNEL_CONTACTS else None
    if address is None:
        return None
    if channel == "email" and (simulated := EMAILS.get(address.lower())):
        return simulated
    if not test:
        return None
    if channel == "sms":
        return PHONE_ENDINGS.get(address[-4:], "delivered")
    return "delivered"


def outcome(delivery_id: int, simulated: Fate) -> Outcome:
    if simulated == "delivered":
        return Outcome(delivery_id, "sent", provider_ref=REF_PREFIX + secrets.token_hex(12), provider=PROVIDER)
    if simulated == "temporary":
        return Outcome(delivery_id, "retry", "simulated temporary failure", provider=PROVIDER)
    return Outcome(delivery_id, "failed", "simulated permanent failure", provider=PROVIDER)


def is_simulated(provider: str | None) -> bool:
    return provider == PROVIDER


def is_test(message: Message) -> bool:
    """Whether `message` belongs to a policy published with a test key (a policy or its notice)."""
    return bool(getattr(message, "test", False))


def split(channel: str, recipients: Sequence[Recipient], test: bool) -> tuple[list[Outcome], list[Recipient]]:
    """(the simulator's outcomes, the recipients left for the channel)."""
    simulated: list[Outcome] = []
    real: list[Recipient] = []
    for r in recipients:
        f = fate(channel, r, test)
        if f is None:
            real.append(r)
        else:
            simulated.append(outcome(r.delivery_id, f))
    return simulated, real


@dataclass(frozen=True)
class _Delivered:
    """The simulator's receipt for a message it "sent" (a store.receipts.Receipt)."""

    message_id: str
    delivered: bool = True
    error_code: str | None = None
    reported_at: datetime | None = None
    out_id: str | None = None
    phone_number: str | None = None


async def deliver_sent(conn: AsyncConnection, written: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Receipts for the simulated messages just written `sent` ((channel, row update) pairs), in
    the same transaction: they are delivered the moment they are sent."""
    by_channel: dict[str, list[_Delivered]] = {}
    for channel, update in written:
        if update["new_status"] == "sent" and is_simulated(update.get("new_provider")):
            by_channel.setdefault(channel, []).append(_Delivered(update["new_ref"]))
    for channel, receipts in by_channel.items():
        await apply_receipts(conn, channel, receipts, now())

"""Replies from phones: `R` or `TD` (退订) stops SMS to that number, whoever's subscription it is."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import sqlalchemy as sa

from pushsvc.core.identifiers import normalise_phone
from pushsvc.services import Services
from pushsvc.store.schema import subscribers
from pushsvc.store.subscribers import remove_channel
from pushsvc.subscriptions.suppression import add as suppress

STOP_WORDS = frozenset({"R", "TD"})  # 退订 replies mainland gateways recognise
REPLY_SOURCE = "sms:reply"


def is_stop_reply(content: str) -> bool:
    """`R` or `TD`, any case, spaces trimmed; full-width letters (Ｒ) count too."""
    return unicodedata.normalize("NFKC", content).strip().upper() in STOP_WORDS


async def opt_out(svc: Services, channel: str, replies: Iterable[tuple[str, str]]) -> int:
    """`replies`: (phone number as the gateway wrote it, content). Returns how many subscriptions
    lost the channel; a repeated reply changes nothing."""
    phones: set[str] = set()
    for phone, content in replies:
        if is_stop_reply(content):
            try:
                phones.add(normalise_phone(phone))
            except ValueError:
                continue  # not a number we could have sent to
    if not phones:
        return 0
    opted_out = 0
    async with svc.db.write() as conn:
        # The number said it wants no more texts: whoever subscribes it again must prove it first.
        await suppress(svc, conn, "phone", phones, "reply_r")
        found = await conn.execute(
            sa.select(subscribers.c.id).where(subscribers.c.phone.in_(sorted(phones)), subscribers.c.status != "erased")
        )
        for sid in found.scalars().all():
            opted_out += await remove_channel(conn, sid, channel, REPLY_SOURCE)
    return opted_out

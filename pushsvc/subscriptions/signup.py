"""Subscribing from the public form: a pending subscriber, and the message that confirms it.

Nothing is sent to a new subscriber but the confirmation until a contact is proven: the
subscriber is `pending` with no channel on. Someone who is already subscribed gets a way into
their subscription instead, and the answer is the same either way.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.exc import IntegrityError

from pushsvc.core.subscribers import NewSubscriber
from pushsvc.core.verification import ContactKind
from pushsvc.services import Services
from pushsvc.store.self_service import channels_on, enrol, subscriber_by_contact, wanted_channels
from pushsvc.subscriptions.proofs import Limited, ask, take_messages


async def sign_up(svc: Services, sub: NewSubscriber, client: str, source: str) -> Limited | Literal["asked", "uscc_taken"]:
    """Store `sub` as pending and ask its contacts to prove themselves (`asked`), unless a
    message is over its limit, or the organisation (`sub`'s USCC) is someone else's subscriber."""
    contacts: dict[ContactKind, str] = {k: v for k, v in (("email", sub.contacts.email), ("phone", sub.contacts.phone)) if v}
    limited = await take_messages(svc, contacts, client)
    if limited is not None:
        return limited
    try:
        async with svc.db.write() as conn:
            enrolment = await enrol(conn, sub, source)
    except IntegrityError:  # a twin request (a double submit) stored the contact meanwhile: it is known now
        async with svc.db.write() as conn:
            enrolment = await enrol(conn, sub, source)
    if enrolment.uscc_taken:
        return "uscc_taken"
    if enrolment.confirm is not None:
        await ask(svc, "confirmation", [(enrolment.confirm, kind) for kind in contacts])
    else:
        await ask(svc, "manage_link", [(sid, kind) for kind, sid in enrolment.known.items()])
    return "asked"


async def resend_code(svc: Services, phone: str, client: str) -> Limited | None:
    """A new confirmation code for a number waiting for one; limited and answered the same for
    any other number."""
    limited = await take_messages(svc, {"phone": phone}, client)
    if limited is not None:
        return limited
    async with svc.db.read() as conn:
        found = await subscriber_by_contact(conn, "phone", phone)
        waiting = found is not None and "sms" in await wanted_channels(conn, found[0]) - await channels_on(conn, found[0])
    if found is not None and waiting:
        await ask(svc, "confirmation", [(found[0], "phone")])
    return None

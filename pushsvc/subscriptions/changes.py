"""A person's own changes to their subscription: every choice of the subscribe form (`save`),
pausing and resuming, leaving a channel or everything, erasure, and the one-click unsubscribe of a
message's link. A changed contact is off until proven; changes apply from the next policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from pushsvc.core.subscribers import NewSubscriber
from pushsvc.core.verification import CHANNEL_OF, ContactKind
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import self_service as store
from pushsvc.store.subscribers import find_duplicates, load_subscriber, remove_channel
from pushsvc.subscriptions.proofs import Limited, ManageSession, ask, codes_of, take_messages

KIND_OF = {channel: kind for kind, channel in CHANNEL_OF.items()}  # "email" -> "email", "sms" -> "phone"


@dataclass(frozen=True)
class Saved:
    """The contacts asked to prove themselves before the channels they reach come on."""

    awaiting: dict[ContactKind, str]


@dataclass(frozen=True)
class Taken:
    """Identities (`email`, `phone`, `uscc`, ...) that belong to another subscriber; empty when
    one was taken between the check and the write, which one unknown."""

    names: frozenset[str]


async def save(svc: Services, session: ManageSession, new: NewSubscriber, client: str,
               source: str) -> Saved | Taken | Limited:
    """Make `new` the subscriber's choices. A channel stays or comes on when its contact is the
    one the session was opened with, or is unchanged and was on; otherwise its contact is asked to
    prove itself first. WeChat contacts cannot be proven and come on with the session's proof."""
    sid, sub = session.subscriber_id, session.subscriber
    async with svc.db.read() as conn:
        taken = {name for (name, _), owner in (await find_duplicates(conn, [new])).items() if owner != sid}
    if taken:
        return Taken(frozenset(taken))
    # "" never reaches `prove`: validation gives every channel asked for its contact.
    contacts = {"email": new.contacts.email or "", "phone": new.contacts.phone or ""}
    on, requested = set(sub["channels"]), set(new.channels)
    keep: set[str] = set()
    prove: dict[ContactKind, str] = {}
    for channel in requested:
        kind = KIND_OF.get(channel)
        if kind is None or (contacts[kind] == sub[kind] and (channel in on or kind == session.via)):
            keep.add(channel)
        else:
            prove[kind] = contacts[kind]
    limited = await take_messages(svc, prove, client)
    if limited is not None:
        return limited
    try:
        async with svc.db.write() as conn:
            await store.switch_off(conn, sid, (on & requested) - keep)
            await store.replace_wishes(conn, sid, new, source)
            if keep - on:
                await store.turn_on(conn, sid, keep - on, proof="manage", source=source)
            await audit.record(conn, audit.person(sid), "subscriber.change", sid, proving=sorted(prove))
    except IntegrityError:  # another subscriber took the contact between the check above and this write
        return Taken(frozenset())
    await ask(svc, "confirmation", [(sid, kind) for kind in prove])
    return Saved(prove)


async def pause(svc: Services, sid: int) -> None:
    async with svc.db.write() as conn:
        await store.set_paused(conn, sid, True)
        await audit.record(conn, audit.person(sid), "subscriber.pause", sid)


async def resume(svc: Services, sid: int) -> None:
    async with svc.db.write() as conn:
        await store.set_paused(conn, sid, False)
        await audit.record(conn, audit.person(sid), "subscriber.resume", sid)


async def leave(svc: Services, sid: int, channel: str, source: str) -> None:
    async with svc.db.write() as conn:
        await store.withdraw(conn, sid, {channel}, source)
        await audit.record(conn, audit.person(sid), "subscriber.leave", sid, channel=channel)


async def leave_all(svc: Services, sid: int, source: str) -> None:
    async with svc.db.write() as conn:
        await store.leave_all(conn, sid, source)
        await audit.record(conn, audit.person(sid), "subscriber.leave", sid, channel="*")


async def erase(svc: Services, sid: int, source: str, actor: str | None = None) -> None:
    """Everything about the subscriber deleted (PIPL), and any code sent to their phone forgotten.
    `actor` for the audit log: the person themselves unless given (a department's key, the admin)."""
    async with svc.db.write() as conn:
        sub = await load_subscriber(conn, sid)
        await store.erase(conn, sid, source)
        await audit.record(conn, actor or audit.person(sid), "subscriber.erase", sid)
    if sub is not None and sub["phone"]:
        await codes_of(svc).forget(sub["phone"])


async def unsubscribe(svc: Services, sid: int, channel: str) -> None:
    """One-click unsubscribe from a message's link (RFC 8058): the channel off and withdrawn."""
    async with svc.db.write() as conn:
        await remove_channel(conn, sid, channel, source=f"{channel}:one-click")
        await audit.record(conn, audit.person(sid), "subscriber.unsubscribe", sid, channel=channel)

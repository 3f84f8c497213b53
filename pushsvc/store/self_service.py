"""What the self-service pages read and change about one subscriber: the channels they asked for
and the ones on, pausing and leaving, their data as JSON, erasure; and forgetting requests that
were never confirmed.

The consents table is the record of wishes: a `granted` row adds the channels asked for, a
`withdrawn` row takes channels away, a `confirmed` row records a contact proven and the channels
that came on with it. A channel row exists only while the channel is asked for and its contact
proven.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.subscribers import NewSubscriber
from pushsvc.store.error_codes import keep_error_codes
from pushsvc.store.reach_index import note_changed
from pushsvc.store.schema import (
    consents,
    deliveries,
    policies,
    policy_follows,
    subscriber_attributes,
    subscriber_audiences,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)
from pushsvc.store.subscribers import find_duplicates, insert_subscribers, load_subscriber, now, replace_choices

S = subscribers.c
C = subscriber_channels.c
CONTACT_COLUMNS = {"email": S.email, "phone": S.phone}
# The tables holding a subscriber's choices; attributes before the groups they belong to.
# What a subscriber's erasure or purge deletes with their record (the policies they follow too).
_CHILDREN = (subscriber_attributes, subscriber_audiences, subscriber_domains, subscriber_channels, policy_follows)


async def subscriber_by_contact(conn: AsyncConnection, kind: str, value: str) -> tuple[int, str] | None:
    """(id, status) of the subscriber with this e-mail address or phone number, unless erased."""
    column = CONTACT_COLUMNS[kind]
    row = (await conn.execute(sa.select(S.id, S.status).where(column == value, S.status != "erased"))).first()
    return (row.id, row.status) if row else None


async def statuses(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, str]:
    rows = await conn.execute(sa.select(S.id, S.status).where(S.id.in_(list(ids))))
    return {row.id: row.status for row in rows}


@dataclass(frozen=True)
class Enrolment:
    """What a subscribe request led to: a subscriber whose contacts are to be confirmed (new, or a
    request never confirmed, asked again), or the subscribers its contacts already belong to
    (each gets a way into its own subscription, nothing changes until then), or an organisation
    that someone else subscribed."""

    confirm: int | None = None
    known: dict[str, int] = field(default_factory=dict)  # "email" | "phone" -> subscriber id
    uscc_taken: bool = False


async def enrol(conn: AsyncConnection, sub: NewSubscriber, source: str) -> Enrolment:
    owners = {name: sid for (name, _), sid in (await find_duplicates(conn, [sub])).items()}
    if not owners:
        [sid] = await insert_subscribers(conn, [sub], status="pending", source=source, department_id=None,
                                         by_person=True)
        return Enrolment(confirm=sid)
    ids = set(owners.values())
    if len(ids) == 1 and (await statuses(conn, ids)).get(next(iter(ids))) == "pending":
        # Nobody proved anything of it yet: the newer request replaces it.
        [sid] = ids
        await replace_wishes(conn, sid, sub, source)
        return Enrolment(confirm=sid)
    by_contact = {name: owners[name] for name in CONTACT_COLUMNS if name in owners}
    if "uscc" in owners and owners["uscc"] not in by_contact.values():
        return Enrolment(uscc_taken=True)
    return Enrolment(known=by_contact)


async def channels_on(conn: AsyncConnection, sid: int) -> set[str]:
    return set((await conn.execute(sa.select(C.channel).where(C.subscriber_id == sid))).scalars())


async def wanted_channels(conn: AsyncConnection, sid: int) -> set[str]:
    """The channels the subscriber asked for and has not withdrawn since."""
    rows = await conn.execute(
        sa.select(consents.c.action, consents.c.scope).where(consents.c.subscriber_id == sid).order_by(consents.c.id)
    )
    wanted: set[str] = set()
    for action, scope in rows:
        channels = set(scope.get("channels", ()))
        if action == "granted":
            wanted |= channels
        elif action == "withdrawn":
            wanted -= channels
    return wanted


async def replace_wishes(conn: AsyncConnection, sid: int, sub: NewSubscriber, source: str) -> None:
    """Make `sub`'s choices the subscriber's: channels no longer asked for are withdrawn (and off),
    the rest granted; contacts, groups, attributes and domains replaced. No channel comes on here."""
    await withdraw(conn, sid, (await wanted_channels(conn, sid) | await channels_on(conn, sid)) - set(sub.channels),
                    source)
    await replace_choices(conn, sid, sub, source)


async def withdraw(conn: AsyncConnection, sid: int, channels: set[str], source: str) -> None:
    """Channels off and no longer wanted, whether they were on or still waiting for a proof."""
    if channels:
        await conn.execute(sa.delete(subscriber_channels).where(C.subscriber_id == sid, C.channel.in_(sorted(channels))))
        await conn.execute(sa.insert(consents).values(subscriber_id=sid, action="withdrawn",
                                                      scope={"channels": sorted(channels)}, source=source, created_at=now()))
        await note_changed(conn, [sid])


async def turn_on(conn: AsyncConnection, sid: int, channels: Iterable[str], *, proof: str, source: str) -> list[str]:
    """Turn on `channels` now that `proof` (the contact proven: email, phone, or the manage page)
    stands behind them; a pending subscriber becomes active, one who had left comes back when
    something came on. Returns the channels that were off."""
    fresh = sorted(set(channels) - await channels_on(conn, sid))
    if fresh:
        await conn.execute(sa.insert(subscriber_channels), [{"subscriber_id": sid, "channel": ch} for ch in fresh])
    await conn.execute(
        sa.insert(consents).values(subscriber_id=sid, action="confirmed", scope={"channels": fresh, "contact": proof},
                                   source=source, created_at=now())
    )
    await note_changed(conn, [sid])
    back = ["pending", "unsubscribed"] if fresh else ["pending"]
    await conn.execute(
        sa.update(subscribers).where(S.id == sid, S.status.in_(back)).values(status="active", updated_at=now())
    )
    return fresh


async def switch_off(conn: AsyncConnection, sid: int, channels: Iterable[str]) -> None:
    """Channels still wanted whose contact changed: off until the new contact is proven. Not a
    withdrawal: the consent that follows records the wish."""
    await conn.execute(sa.delete(subscriber_channels).where(C.subscriber_id == sid, C.channel.in_(sorted(set(channels)))))
    await note_changed(conn, [sid])


async def set_paused(conn: AsyncConnection, sid: int, paused: bool) -> None:
    """Pausing keeps every choice and sends nothing until resumed; it withdraws no consent."""
    old, new = ("active", "paused") if paused else ("paused", "active")
    await conn.execute(sa.update(subscribers).where(S.id == sid, S.status == old).values(status=new, updated_at=now()))
    await note_changed(conn, [sid])


async def leave_all(conn: AsyncConnection, sid: int, source: str) -> None:
    """Every channel off and withdrawn, those waiting for a proof too: a late confirmation brings
    nothing back."""
    await withdraw(conn, sid, await channels_on(conn, sid) | await wanted_channels(conn, sid), source)
    await conn.execute(
        sa.update(subscribers).where(S.id == sid, S.status != "erased").values(status="unsubscribed", updated_at=now())
    )
    await note_changed(conn, [sid])


async def erase(conn: AsyncConnection, sid: int, source: str) -> None:
    """PIPL deletion: contacts, name, groups, attributes, domains and channels go at once, and the
    ledger's provider replies keep only their codes (an SMTP 5xx usually quotes the address). The
    row stays, empty and `erased`, so the ledger's counts still add up without saying who."""
    gone = await channels_on(conn, sid) | await wanted_channels(conn, sid)
    for table in _CHILDREN:
        await conn.execute(sa.delete(table).where(table.c.subscriber_id == sid))
    await note_changed(conn, [sid])
    await keep_error_codes(conn, deliveries, deliveries.c.subscriber_id == sid)
    await conn.execute(
        sa.update(subscribers).where(S.id == sid).values(
            name=None, email=None, phone=None, uscc=None, wechat_openid=None, wechat_webhook=None,
            quiet_start=None, quiet_end=None, external_id=None, status="erased", updated_at=now(),
        )
    )
    await conn.execute(
        sa.insert(consents).values(subscriber_id=sid, action="withdrawn", scope={"channels": sorted(gone), "erased": True},
                                   source=source, created_at=now())
    )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def export(conn: AsyncConnection, sid: int) -> dict[str, Any] | None:
    """Everything held about the subscriber, as JSON-ready data (PIPL's right of access)."""
    sub = await load_subscriber(conn, sid)
    if sub is None or sub["status"] == "erased":
        return None
    consent_rows = await conn.execute(
        sa.select(consents.c.action, consents.c.scope, consents.c.source, consents.c.created_at)
        .where(consents.c.subscriber_id == sid).order_by(consents.c.id)
    )
    D = deliveries.c
    delivery_rows = await conn.execute(
        sa.select(D.policy_id, policies.c.title, D.channel, D.status, D.created_at, D.sent_at, D.delivered_at)
        .select_from(deliveries.join(policies, policies.c.id == D.policy_id))
        .where(D.subscriber_id == sid).order_by(D.id)
    )
    followed = await conn.execute(
        sa.select(policy_follows.c.policy_id, policies.c.title, policy_follows.c.created_at)
        .select_from(policy_follows.join(policies, policies.c.id == policy_follows.c.policy_id))
        .where(policy_follows.c.subscriber_id == sid).order_by(policy_follows.c.created_at)
    )
    fields = ("id", "status", "name", "email", "phone", "uscc", "wechat_openid", "wechat_webhook", "frequency",
              "locale", "quiet_start", "quiet_end", "audiences", "domains", "channels")
    return {
        "subscriber": {**{f: sub[f] for f in fields}, "created_at": _time(sub["created_at"]),
                       "updated_at": _time(sub["updated_at"])},
        "consents": [{"action": r.action, "scope": r.scope, "source": r.source, "at": _time(r.created_at)}
                     for r in consent_rows],
        "deliveries": [{"policy_id": r.policy_id, "policy_title": r.title, "channel": r.channel, "status": r.status,
                        "created_at": _time(r.created_at), "sent_at": _time(r.sent_at),
                        "delivered_at": _time(r.delivered_at)} for r in delivery_rows],
        "following": [{"policy_id": r.policy_id, "policy_title": r.title, "since": _time(r.created_at)}
                      for r in followed],
    }


async def purge_unconfirmed(conn: AsyncConnection, created_before: datetime) -> int:
    """Delete requests never confirmed in time: contacts nobody proved are not kept. Timed from a
    request's latest asking (a repeat sends a new link, valid as long). Pending subscribers have no
    deliveries; the check only guards the rule."""
    D, P = deliveries.c, subscribers.alias("p").c  # an alias: never correlated with the DELETE's own table
    doomed = sa.select(P.id).where(P.status == "pending", P.updated_at < created_before,
                                   ~sa.exists().where(D.subscriber_id == P.id))
    for table in (*_CHILDREN, consents):
        await conn.execute(sa.delete(table).where(table.c.subscriber_id.in_(doomed)))
    result = await conn.execute(sa.delete(subscribers).where(S.id.in_(doomed)))
    return result.rowcount

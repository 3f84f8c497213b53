"""Subscriber rows: create, read, and bulk import with merging on e-mail, phone or USCC."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.subscribers import NewSubscriber
from pushsvc.store.db import Database
from pushsvc.store.schema import (
    consents,
    subscriber_attributes,
    subscriber_audiences,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)

S = subscribers.c
# The contacts that identify a person or organisation: a second row with one of them is a duplicate.
IDENTITY_FIELDS = ("email", "phone", "uscc")
IDENTITY_PATHS = {"email": "email", "phone": "phone", "uscc": "audiences.*.uscc"}


def identity_of(sub: NewSubscriber) -> dict[str, str]:
    values = {"email": sub.contacts.email, "phone": sub.contacts.phone, "uscc": sub.uscc}
    return {k: v for k, v in values.items() if v}


async def find_duplicates(conn: AsyncConnection, subs: Sequence[NewSubscriber]) -> dict[tuple[str, str], int]:
    """(field, value) -> existing subscriber id, for every identity value among `subs`."""
    found: dict[tuple[str, str], int] = {}
    for fieldname in IDENTITY_FIELDS:
        values = list({v for sub in subs if (v := identity_of(sub).get(fieldname))})
        for start in range(0, len(values), 900):  # stay under SQLite's bound-parameter limit
            chunk = values[start : start + 900]
            column = S[fieldname]
            rows = await conn.execute(sa.select(column, S.id).where(column.in_(chunk), S.status != "erased"))
            found.update({(fieldname, value): sid for value, sid in rows})
    return found


def _subscriber_row(sub: NewSubscriber, status: str, department_id: int | None, at: datetime) -> dict[str, Any]:
    c = sub.contacts
    return {
        "name": sub.name,
        "email": c.email,
        "phone": c.phone,
        "uscc": sub.uscc,
        "wechat_openid": c.wechat_openid,
        "wechat_webhook": c.wechat_webhook,
        "status": status,
        "frequency": sub.frequency,
        "locale": sub.locale,
        "quiet_start": sub.quiet_start,
        "quiet_end": sub.quiet_end,
        "department_id": department_id,
        "created_at": at,
        "updated_at": at,
    }


def attribute_row(sid: int, audience: str, name: str, value: Any) -> dict[str, Any]:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return {"subscriber_id": sid, "audience": audience, "name": name,
            "value": json.dumps(value, ensure_ascii=False), "num": number}


async def _write_children(
    conn: AsyncConnection, pairs: Sequence[tuple[int, NewSubscriber]], source: str, at: datetime,
    channels_on: bool = True,
) -> None:
    audience_rows = [{"subscriber_id": sid, "audience": slug} for sid, sub in pairs for slug in sub.audiences]
    attribute_rows = [
        attribute_row(sid, slug, name, value)
        for sid, sub in pairs
        for slug, attrs in sub.audiences.items()
        for name, value in attrs.items()
    ]
    domain_rows = [{"subscriber_id": sid, "domain": d} for sid, sub in pairs for d in sub.domains]
    channel_rows = [{"subscriber_id": sid, "channel": ch} for sid, sub in pairs for ch in sub.channels if channels_on]
    consent_rows = [
        {
            "subscriber_id": sid,
            "action": "granted",
            "scope": {"channels": list(sub.channels), "domains": list(sub.domains)},
            "source": source,
            "created_at": at,
        }
        for sid, sub in pairs
    ]
    for table, rows in (
        (subscriber_audiences, audience_rows),
        (subscriber_attributes, attribute_rows),
        (subscriber_domains, domain_rows),
        (subscriber_channels, channel_rows),
        (consents, consent_rows),
    ):
        if rows:
            await conn.execute(sa.insert(table), rows)


async def insert_subscribers(
    conn: AsyncConnection,
    subs: Sequence[NewSubscriber],
    *,
    status: str,
    source: str,
    department_id: int | None,
    channels_on: bool = True,
) -> list[int]:
    """Insert new subscribers (already checked for duplicates) with all their child rows.
    `channels_on=False`: the consent records the channels asked for, but none is on until its
    contact is confirmed (the public subscribe page)."""
    if not subs:
        return []
    at = now()
    rows = [_subscriber_row(sub, status, department_id, at) for sub in subs]
    result = await conn.execute(sa.insert(subscribers).returning(S.id, sort_by_parameter_order=True), rows)
    ids = [row[0] for row in result]
    await _write_children(conn, list(zip(ids, subs)), source, at, channels_on)
    return ids


async def merge_into(conn: AsyncConnection, sid: int, sub: NewSubscriber, source: str) -> None:
    """Fold a duplicate row into an existing subscriber: fill contacts, add groups, domains, channels."""
    at = now()
    current = (await conn.execute(sa.select(subscribers).where(S.id == sid))).mappings().one()
    update: dict[str, Any] = {"updated_at": at}
    fresh = _subscriber_row(sub, current["status"], current["department_id"], at)
    for key in ("name", "email", "phone", "uscc", "wechat_openid", "wechat_webhook"):
        if fresh[key] and not current[key]:
            update[key] = fresh[key]
    await conn.execute(sa.update(subscribers).where(S.id == sid).values(**update))
    for table in (subscriber_attributes, subscriber_audiences):  # the groups given again are replaced whole
        await conn.execute(
            sa.delete(table).where(table.c.subscriber_id == sid, table.c.audience.in_(list(sub.audiences)))
        )
    have_domains = set(
        (await conn.execute(sa.select(subscriber_domains.c.domain).where(subscriber_domains.c.subscriber_id == sid))).scalars()
    )
    have_channels = set(
        (await conn.execute(sa.select(subscriber_channels.c.channel).where(subscriber_channels.c.subscriber_id == sid))).scalars()
    )
    extra = NewSubscriber(
        name=None,
        contacts=sub.contacts,
        uscc=None,
        audiences=sub.audiences,
        domains=tuple(d for d in sub.domains if d not in have_domains and "*" not in have_domains),
        channels=tuple(c for c in sub.channels if c not in have_channels),
    )
    await _write_children(conn, [(sid, extra)], source, at)


async def replace_choices(conn: AsyncConnection, sid: int, sub: NewSubscriber, source: str) -> None:
    """Make `sub`'s contacts and choices the subscriber's own: groups, attributes and domains
    replaced whole, the consent to its channels recorded. Channel rows are left to the caller:
    a channel comes on only once its contact is proven (the self-service pages)."""
    at = now()
    current = (await conn.execute(sa.select(S.status, S.department_id).where(S.id == sid))).one()
    fresh = _subscriber_row(sub, current.status, current.department_id, at)
    del fresh["created_at"]
    await conn.execute(sa.update(subscribers).where(S.id == sid).values(**fresh))
    for table in (subscriber_attributes, subscriber_audiences, subscriber_domains):
        await conn.execute(sa.delete(table).where(table.c.subscriber_id == sid))
    await _write_children(conn, [(sid, sub)], source, at, channels_on=False)


@dataclass
class ImportOutcome:
    imported: int
    merged: int
    rejected: list[tuple[int, list[FieldError]]]


async def import_chunk(
    conn: AsyncConnection,
    rows: Sequence[tuple[int, NewSubscriber]],
    *,
    source: str,
    department_id: int | None,
) -> ImportOutcome:
    """Write one chunk of validated rows: new ones inserted in bulk, duplicates merged, rows whose
    identity points at two different subscribers rejected (nothing of them written)."""
    existing = await find_duplicates(conn, [sub for _, sub in rows])
    fresh: list[tuple[int, NewSubscriber]] = []
    # (existing subscriber id, or None with the earlier row of this chunk it duplicates, row)
    merges: list[tuple[int | None, int | None, NewSubscriber]] = []
    rejected: list[tuple[int, list[FieldError]]] = []
    claimed: dict[tuple[str, str], int] = {}  # identities taken by earlier new rows of this chunk
    for rowno, sub in rows:
        ident = identity_of(sub)
        targets = {existing[kv] for kv in ident.items() if kv in existing}
        earlier = {claimed[kv] for kv in ident.items() if kv in claimed}
        if len(targets) + len(earlier) > 1:
            field = IDENTITY_PATHS[next(iter(ident))]
            rejected.append((rowno, [FieldError(field, "matches more than one existing subscriber")]))
        elif targets:
            merges.append((targets.pop(), None, sub))
        elif earlier:
            merges.append((None, earlier.pop(), sub))
        else:
            claimed.update({kv: rowno for kv in ident.items()})
            fresh.append((rowno, sub))
    ids = await insert_subscribers(
        conn, [sub for _, sub in fresh], status="active", source=source, department_id=department_id
    )
    id_of_row = {rowno: sid for (rowno, _), sid in zip(fresh, ids)}
    for target, target_row, sub in merges:
        await merge_into(conn, target if target is not None else id_of_row[target_row], sub, source)  # type: ignore[index]
    return ImportOutcome(imported=len(fresh), merged=len(merges), rejected=rejected)


async def load_subscriber(conn: AsyncConnection, sid: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(subscribers).where(S.id == sid))).mappings().first()
    if row is None:
        return None
    groups = await conn.execute(
        sa.select(subscriber_audiences.c.audience).where(subscriber_audiences.c.subscriber_id == sid)
    )
    audiences: dict[str, dict[str, Any]] = {slug: {} for slug in groups.scalars()}
    values = await conn.execute(
        sa.select(subscriber_attributes.c.audience, subscriber_attributes.c.name, subscriber_attributes.c.value).where(
            subscriber_attributes.c.subscriber_id == sid
        )
    )
    for slug, name, value in values:
        audiences[slug][name] = json.loads(value)
    domains = await conn.execute(
        sa.select(subscriber_domains.c.domain).where(subscriber_domains.c.subscriber_id == sid).order_by("domain")
    )
    channels = await conn.execute(
        sa.select(subscriber_channels.c.channel).where(subscriber_channels.c.subscriber_id == sid).order_by("channel")
    )
    return {
        **row,
        "audiences": audiences,
        "domains": list(domains.scalars()),
        "channels": list(channels.scalars()),
    }


async def remove_channel(conn: AsyncConnection, sid: int, channel: str, source: str) -> bool:
    """Withdraw consent for one channel (one-click unsubscribe, SMS reply). True if it was on."""
    result = await conn.execute(
        sa.delete(subscriber_channels).where(
            subscriber_channels.c.subscriber_id == sid, subscriber_channels.c.channel == channel
        )
    )
    if result.rowcount:
        await conn.execute(
            sa.insert(consents).values(
                subscriber_id=sid, action="withdrawn", scope={"channels": [channel]}, source=source, created_at=now()
            )
        )
    return bool(result.rowcount)


SUBSCRIBER_TABLES = (subscribers, subscriber_audiences, subscriber_attributes, subscriber_domains, subscriber_channels)


async def refresh_statistics(db: Database) -> None:
    """Let PostgreSQL's planner see the subscriber tables as they are now. (SQLite keeps no
    statistics unless asked, and its plans here are chosen without them.)"""
    if db.is_sqlite:
        return
    async with db.write() as conn:
        await conn.execute(sa.text("ANALYZE " + ", ".join(t.name for t in SUBSCRIBER_TABLES)))

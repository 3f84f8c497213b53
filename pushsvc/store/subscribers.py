"""Subscriber rows: create, read, and bulk import with merging on e-mail, phone or USCC.

Ownership. A record is supplied by the person (the self-service pages), a department (its key or an
import for it: `department_id`) or the admin (`supplied_by`). A contact (e-mail, phone, USCC) is
held by one record city-wide, so a department's row naming a contact held by a record it did not
supply is a conflict: never merged, and the answer says neither whose record it is nor its id.

A merge into the caller's own record lets the person's choices win:
- if the person has been on the self-service pages (a consent written by a `web:` page: they saved
  their choices or proved a contact there), nothing of the row is applied: contacts, channels,
  groups and attributes, domains, frequency, locale and quiet hours are theirs now;
- otherwise empty contacts are filled (none replaced), groups the row gives are replaced whole with
  their attributes (the department's own data), its domains are added, and a channel is turned on
  only if no one ever withdrew it (the person by one-click, R/TD reply or page, or anyone else) and
  the row's contacts are the record's own (so the department vouches for the address it reaches);
- the status never changes: an unsubscribed or paused person stays so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.subscribers import NewSubscriber
from pushsvc.store.db import Database
from pushsvc.store.reach_index import note_changed
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
CONTACT_KEYS = ("email", "phone", "uscc", "wechat_openid", "wechat_webhook")
# The consents the self-service pages write name the page: `web:/manage`, `web:/confirm`, ...
PAGES_SOURCE = "web:"
# What an import row or a create is told of a contact held by a record the caller did not supply:
# not whose it is, not its id.
HELD_ELSEWHERE = "is already held by another subscriber record"
PERSON_CHOSE = "the person has set their own choices on the self-service pages; nothing of the row was applied"
REFERENCE_TAKEN = "is already the reference of another of the department's subscribers"


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


def supplied_by(department_id: int | None) -> sa.ColumnElement[bool]:
    """The records the caller supplied: the department's own, or the admin's (None)."""
    return S.supplied_by == "admin" if department_id is None else S.department_id == department_id


async def supplied_by_caller(conn: AsyncConnection, ids: Iterable[int], department_id: int | None) -> set[int]:
    """Those of `ids` the caller supplied: the department's own records, or the admin's (None)."""
    return set((await conn.execute(sa.select(S.id).where(S.id.in_(sorted(set(ids))), supplied_by(department_id)))).scalars())


async def references_held(conn: AsyncConnection, department_id: int | None, refs: Iterable[str]) -> dict[str, int]:
    """external_id -> subscriber id, among the caller's own records (unique within a department)."""
    values = sorted(set(refs))
    found: dict[str, int] = {}
    for start in range(0, len(values), 900):  # stay under SQLite's bound-parameter limit
        rows = await conn.execute(sa.select(S.external_id, S.id).where(
            supplied_by(department_id), S.external_id.in_(values[start : start + 900])))
        found.update({ref: sid for ref, sid in rows})
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
    # Every insert, merge and replacement of choices passes here: the reach index re-reads them.
    await note_changed(conn, [sid for sid, _ in pairs])


async def insert_subscribers(
    conn: AsyncConnection,
    subs: Sequence[NewSubscriber],
    *,
    status: str,
    source: str,
    department_id: int | None,
    by_person: bool = False,
) -> list[int]:
    """Insert new subscribers (already checked for duplicates) with all their child rows, supplied
    by the department (`department_id`), the admin (None) or the person (`by_person`, the public
    subscribe page): then the consent records the channels asked for, but none is on until its
    contact is confirmed."""
    if not subs:
        return []
    at = now()
    supplied_by = "person" if by_person else "admin" if department_id is None else "department"
    rows = [{**_subscriber_row(sub, status, department_id, at), "supplied_by": supplied_by,
             "external_id": None if by_person else sub.external_id} for sub in subs]
    result = await conn.execute(sa.insert(subscribers).returning(S.id, sort_by_parameter_order=True), rows)
    ids = [row[0] for row in result]
    await _write_children(conn, list(zip(ids, subs)), source, at, channels_on=not by_person)
    return ids


@dataclass(frozen=True)
class PersonChoices:
    """What the consent history says is the person's to decide: everything once they have used the
    self-service pages (`on_pages`), and the channels anyone ever withdrew."""

    on_pages: bool
    withdrawn: frozenset[str]


async def person_choices(conn: AsyncConnection, sid: int) -> PersonChoices:
    history = (await conn.execute(
        sa.select(consents.c.action, consents.c.scope, consents.c.source).where(consents.c.subscriber_id == sid)
    )).all()
    return PersonChoices(
        on_pages=any(row.source.startswith(PAGES_SOURCE) for row in history),
        withdrawn=frozenset(ch for row in history if row.action == "withdrawn" for ch in row.scope.get("channels", ())),
    )


async def merge_into(conn: AsyncConnection, sid: int, sub: NewSubscriber, source: str) -> bool:
    """Fold a row into the caller's own subscriber, the person's choices winning (the module's
    docstring). False, with nothing written, when the person has set their choices on the pages."""
    choices = await person_choices(conn, sid)
    if choices.on_pages:
        return False
    withdrawn = choices.withdrawn
    at = now()
    current = (await conn.execute(sa.select(subscribers).where(S.id == sid))).mappings().one()
    update: dict[str, Any] = {"updated_at": at}
    fresh = {**_subscriber_row(sub, current["status"], current["department_id"], at), "external_id": sub.external_id}
    for key in ("name", "external_id", *CONTACT_KEYS):
        if fresh[key] and not current[key]:
            update[key] = fresh[key]
    await conn.execute(sa.update(subscribers).where(S.id == sid).values(**update))
    vouched = all(fresh[key] is None or fresh[key] == update.get(key, current[key]) for key in CONTACT_KEYS)
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
        channels=tuple(c for c in sub.channels if vouched and c not in have_channels and c not in withdrawn),
    )
    await _write_children(conn, [(sid, extra)], source, at)
    return True


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
    subscriber_ids: list[int]  # written to, for the audit log


async def import_chunk(
    conn: AsyncConnection,
    rows: Sequence[tuple[int, NewSubscriber]],
    *,
    source: str,
    department_id: int | None,
) -> ImportOutcome:
    """Write one chunk of validated rows: new ones inserted in bulk, duplicates of the caller's own
    records merged (the module's docstring); rejected, with nothing of them written: rows naming a
    contact held by a record the caller did not supply, rows whose identity points at two different
    subscribers, rows whose person has set their own choices, and rows giving an `external_id` that
    names another of the caller's records (or another new row of this chunk). A merge fills in an
    empty `external_id`, never replaces one."""
    existing = await find_duplicates(conn, [sub for _, sub in rows])
    own = await supplied_by_caller(conn, existing.values(), department_id)
    refs = await references_held(conn, department_id, [sub.external_id for _, sub in rows if sub.external_id])
    # external_id -> the record it goes to: ("sid", existing id) or ("row", the new row of this chunk)
    ref_targets: dict[str, tuple[str, int]] = {ref: ("sid", sid) for ref, sid in refs.items()}
    fresh: list[tuple[int, NewSubscriber]] = []
    # (row number, existing subscriber id or None with the earlier row of this chunk it duplicates, row)
    merges: list[tuple[int, int | None, int | None, NewSubscriber]] = []
    rejected: list[tuple[int, list[FieldError]]] = []
    claimed: dict[tuple[str, str], int] = {}  # identities taken by earlier new rows of this chunk
    for rowno, sub in rows:
        ident = identity_of(sub)
        held = {name: existing[(name, value)] for name, value in ident.items() if (name, value) in existing}
        elsewhere = [name for name, sid in held.items() if sid not in own]
        targets = set(held.values())
        earlier = {claimed[kv] for kv in ident.items() if kv in claimed}
        goes_to = ("sid", next(iter(targets))) if targets else ("row", next(iter(earlier), rowno))
        if elsewhere:
            rejected.append((rowno, [FieldError(IDENTITY_PATHS[name], HELD_ELSEWHERE) for name in elsewhere]))
        elif len(targets) + len(earlier) > 1:
            field = IDENTITY_PATHS[next(iter(ident))]
            rejected.append((rowno, [FieldError(field, "matches more than one existing subscriber")]))
        elif sub.external_id and ref_targets.setdefault(sub.external_id, goes_to) != goes_to:
            rejected.append((rowno, [FieldError("external_id", REFERENCE_TAKEN)]))
        elif targets:
            merges.append((rowno, targets.pop(), None, sub))
        elif earlier:
            merges.append((rowno, None, earlier.pop(), sub))
        else:
            claimed.update({kv: rowno for kv in ident.items()})
            fresh.append((rowno, sub))
    ids = await insert_subscribers(
        conn, [sub for _, sub in fresh], status="active", source=source, department_id=department_id
    )
    id_of_row = {rowno: sid for (rowno, _), sid in zip(fresh, ids)}
    merged_ids: list[int] = []
    for rowno, target, target_row, sub in merges:
        sid = target if target is not None else id_of_row[target_row]  # type: ignore[index]
        if await merge_into(conn, sid, sub, source):
            merged_ids.append(sid)
        else:
            rejected.append((rowno, [FieldError(IDENTITY_PATHS[next(iter(identity_of(sub)))], PERSON_CHOSE)]))
    return ImportOutcome(imported=len(fresh), merged=len(merged_ids), rejected=rejected, subscriber_ids=ids + merged_ids)


async def load_subscriber(conn: AsyncConnection, sid: int) -> dict[str, Any] | None:
    return next(iter(await load_subscribers(conn, [sid])), None)


async def load_subscribers(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The subscribers' rows with their groups and attributes, domains and channels, in the order
    of `ids` (those that exist): four queries for a page, not four per subscriber."""
    if not ids:
        return []
    rows = {row["id"]: row for row in (await conn.execute(sa.select(subscribers).where(S.id.in_(ids)))).mappings()}
    audiences: dict[int, dict[str, dict[str, Any]]] = {sid: {} for sid in rows}
    domains: dict[int, list[str]] = {sid: [] for sid in rows}
    channels: dict[int, list[str]] = {sid: [] for sid in rows}
    A = subscriber_audiences.c
    for sid, slug in await conn.execute(sa.select(A.subscriber_id, A.audience).where(A.subscriber_id.in_(ids))):
        audiences[sid][slug] = {}
    V = subscriber_attributes.c
    values = await conn.execute(sa.select(V.subscriber_id, V.audience, V.name, V.value).where(V.subscriber_id.in_(ids)))
    for sid, slug, name, value in values:
        audiences[sid][slug][name] = json.loads(value)
    for table, into, column in ((subscriber_domains, domains, "domain"), (subscriber_channels, channels, "channel")):
        found = await conn.execute(
            sa.select(table.c.subscriber_id, table.c[column]).where(table.c.subscriber_id.in_(ids)).order_by(table.c[column])
        )
        for sid, value in found:
            into[sid].append(value)
    return [{**rows[sid], "audiences": audiences[sid], "domains": domains[sid], "channels": channels[sid]}
            for sid in ids if sid in rows]


async def find_subscribers(
    conn: AsyncConnection, *, department_id: int | None, everyone: bool, words: Sequence[str], audience: str | None,
    status: str | None, external_id: str | None, after_id: int, limit: int,
) -> list[int]:
    """Ids of the caller's own records (`everyone`: all departments', for the admin and the city's
    overseers), never an erased one, in id order after `after_id`. Each of `words` (a name, e-mail,
    phone or USCC, or a part of one, already in the forms they are stored in) matches any of them."""
    query = sa.select(S.id).where(S.id > after_id, S.status != "erased").order_by(S.id).limit(limit)
    if not everyone:
        query = query.where(supplied_by(department_id))
    if words:
        query = query.where(sa.or_(*(
            column.icontains(word, autoescape=True) for word in words for column in (S.name, S.email, S.phone, S.uscc)
        )))
    if audience is not None:
        A = subscriber_audiences.c
        query = query.where(sa.exists().where(A.subscriber_id == S.id, A.audience == audience))
    if status is not None:
        query = query.where(S.status == status)
    if external_id is not None:
        query = query.where(S.external_id == external_id)
    return list((await conn.execute(query)).scalars())


async def correct(conn: AsyncConnection, sid: int, sub: NewSubscriber, source: str) -> None:
    """Make `sub` the record (a department's correction of its own record: PATCH, the console),
    checked by the caller against the person's choices. Groups, attributes and domains are
    replaced whole; channels no longer listed are withdrawn; channels newly listed come on (the
    department holds the consent, as when it created the record); the status stays."""
    on = set((await conn.execute(
        sa.select(subscriber_channels.c.channel).where(subscriber_channels.c.subscriber_id == sid))).scalars())
    await replace_choices(conn, sid, sub, source)
    await conn.execute(sa.update(subscribers).where(S.id == sid).values(external_id=sub.external_id))
    for channel in sorted(on - set(sub.channels)):
        await remove_channel(conn, sid, channel, source)
    fresh = [{"subscriber_id": sid, "channel": ch} for ch in sub.channels if ch not in on]
    if fresh:
        await conn.execute(sa.insert(subscriber_channels), fresh)


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
        await note_changed(conn, [sid])
    return bool(result.rowcount)


SUBSCRIBER_TABLES = (subscribers, subscriber_audiences, subscriber_attributes, subscriber_domains, subscriber_channels)


async def refresh_statistics(db: Database) -> None:
    """Let PostgreSQL's planner see the subscriber tables as they are now. (SQLite keeps no
    statistics unless asked, and its plans here are chosen without them.)"""
    if db.is_sqlite:
        return
    async with db.write() as conn:
        await conn.execute(sa.text("ANALYZE " + ", ".join(t.name for t in SUBSCRIBER_TABLES)))

"""The database side of the live reach index (`pushsvc/reach`): the change log that every write to a
subscriber's audience data notes in its own transaction, the grouped reads the index is built from
(whole, or for the subscribers that changed), and the preview's counts as SQL gives them.

The reads hand over each group's subscriber ids as one comma-joined text (`group_concat` on
SQLite, `string_agg` on PostgreSQL): the index turns a million ids into a bitmap without a Python
row object per id, which is what made building it from plain rows slow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.targeting import Targeting
from pushsvc.store.matching import preview_queries
from pushsvc.store.schema import (
    subscriber_attributes,
    subscriber_audiences,
    subscriber_changes,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)

CH = subscriber_changes.c
Pair = tuple[int, int]  # a count and how many of it the asking department supplied


@dataclass
class ReachCounts:
    """What a preview counts: reached in total, per channel, per audience group (each with the
    department's own share, for the "fewer than 5" rule). Channels and groups reaching nobody: 0."""

    total: Pair
    by_channel: dict[str, Pair] = field(default_factory=dict)
    by_audience: dict[str, Pair] = field(default_factory=dict)


async def counted_by_sql(
    conn: AsyncConnection, targeting: Targeting, domain: str, channels: list[str], department_id: int | None
) -> ReachCounts:
    """The counts from the fan-out's own matching, as the preview gave them before the index."""
    total_q, channel_q, audience_q = preview_queries(targeting, domain, channels, department_id)
    total, own = (await conn.execute(total_q)).one()
    by_channel = {c: (0, 0) for c in channels} | {c: (n, o) for c, n, o in await conn.execute(channel_q)}
    by_audience = {g: (0, 0) for g in targeting.audiences} | {g: (n, o) for g, n, o in await conn.execute(audience_q)}
    return ReachCounts((total, own), by_channel, by_audience)


async def note_changed(conn: AsyncConnection, ids: Iterable[int]) -> None:
    """Record, in the caller's transaction, that these subscribers' audience data changed: status,
    supplier, groups, attributes, domains or channels. One call per transaction and subscriber is
    enough: the index re-reads the whole subscriber once the transaction has committed."""
    rows = [{"subscriber_id": sid} for sid in sorted(set(ids))]
    if rows:
        await conn.execute(sa.insert(subscriber_changes), rows)


async def last_change(conn: AsyncConnection) -> int:
    return (await conn.execute(sa.select(sa.func.coalesce(sa.func.max(CH.seq), 0)))).scalar_one()


async def changes(conn: AsyncConnection, after: int, gaps: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """(seq, subscriber id) committed after `after` or inside one of `gaps` (inclusive ranges of
    sequence numbers not seen yet below it), in sequence order."""
    seen = sa.or_(CH.seq > after, *(CH.seq.between(lo, hi) for lo, hi in gaps))
    rows = await conn.execute(sa.select(CH.seq, CH.subscriber_id).where(seen).order_by(CH.seq))
    return [(seq, sid) for seq, sid in rows]


async def prune_changes(conn: AsyncConnection, below: int) -> None:
    """Forget entries every live index has read (the caller knows which: see pushsvc/reach/live.py)."""
    await conn.execute(sa.delete(subscriber_changes).where(CH.seq < below))


def _ids(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    return sa.func.aggregate_strings(sa.cast(column, sa.String), ",")


def audience_reads(sparse: Collection[tuple[str, str]], ids: Sequence[int] | None) -> list[tuple[str, sa.Select[Any]]]:
    """(kind, query) pairs whose rows are `(*key, ids as text)`: subscribers by status and by
    supplying department, members by group, holders of the `sparse` columns by (group, name), the
    other columns' holders by (group, name, value), and subscribers by domain and channel.
    `ids`: only those subscribers (a refresh); None: everyone (a build)."""
    S, A, V = subscribers.c, subscriber_audiences.c, subscriber_attributes.c
    D, C = subscriber_domains.c, subscriber_channels.c

    def only(column: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
        return [] if ids is None else [column.in_(ids)]

    in_sparse = sa.tuple_(V.audience, V.name).in_(sorted(sparse))
    return [
        ("status", sa.select(S.status, _ids(S.id)).where(*only(S.id)).group_by(S.status)),
        ("department", sa.select(S.department_id, _ids(S.id))
         .where(S.department_id.is_not(None), *only(S.id)).group_by(S.department_id)),
        ("audience", sa.select(A.audience, _ids(A.subscriber_id)).where(*only(A.subscriber_id)).group_by(A.audience)),
        # A dense column's holders are the union of its values' (the index takes them from there).
        # One query per sparse column: a range of the (audience, name, value) index each, where
        # one query for all of them scans the whole table on SQLite.
        *(("has", sa.select(sa.literal(group), sa.literal(name), _ids(V.subscriber_id))
           .where(V.audience == group, V.name == name, *only(V.subscriber_id))) for group, name in sorted(sparse)),
        # Grouped by what the (audience, name, value, subscriber_id) index holds, so both backends
        # read it in order without sorting: `num` is not read, the index derives it from the value.
        ("value", sa.select(V.audience, V.name, V.value, _ids(V.subscriber_id))
         .where(*([sa.not_(in_sparse)] if sparse else []), *only(V.subscriber_id))
         .group_by(V.audience, V.name, V.value)),
        ("domain", sa.select(D.domain, _ids(D.subscriber_id)).where(*only(D.subscriber_id)).group_by(D.domain)),
        ("channel", sa.select(C.channel, _ids(C.subscriber_id)).where(*only(C.subscriber_id)).group_by(C.channel)),
    ]


async def read_audience_data(
    conn: AsyncConnection, sparse: Collection[tuple[str, str]], ids: Sequence[int] | None = None
) -> AsyncIterator[tuple[str, tuple[Any, ...], str]]:
    """(kind, key, ids as comma-joined text) for every group `audience_reads` names, streamed: the
    build never holds more than one group's text at a time."""
    for kind, query in audience_reads(sparse, ids):
        result = await conn.stream(query)
        async for row in result:
            *key, text = row
            if text:
                yield kind, tuple(key), text


async def matching_ids(conn: AsyncConnection, condition: sa.ColumnElement[bool]) -> list[int]:
    """The subscribers a matching condition (store/matching.py) holds for: a sparse column's clause."""
    return list((await conn.execute(sa.select(subscribers.c.id).where(condition))).scalars())

"""The public index of policies on each database: its rows (`policy_search`, one per indexed policy,
rewritten with every change), and the search over it.

SQLite: an FTS5 table over `policy_search.terms` (external content, kept by the triggers of
migration 0016), whose rowid is `sort_key`, so that "newest first" is FTS5 walking its doclists
backwards and stopping at the page's last row. PostgreSQL: `terms` is a tsvector with a GIN index,
matched with `@@`. The terms and the query are the same on both (pushsvc.core.search_terms).
A search reads the index alone: a row's facets carry its state (rewritten with every change), its
sort key when it went public (a scheduled policy is listed from then on) and the policy's id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.core.search_terms import (
    LISTED_STATUSES,
    Query,
    fts5_match,
    indexed,
    listed_until,
    policy_of,
    policy_terms,
    sort_key,
    tsquery,
    tsvector,
)
from pushsvc.core.timeliness import went_public
from pushsvc.store.schema import SEARCH_FTS_TABLE, departments, policies, policy_search

P = policies.c
S = policy_search.c
_FTS = sa.table(SEARCH_FTS_TABLE, sa.column("rowid"))


def search_row(dialect: str, policy: Mapping[str, Any], districts: Iterable[str], changed_at: datetime) -> dict[str, Any]:
    """The index row of a stored policy (one that `indexed` accepts)."""
    terms = policy_terms(policy, districts)
    return {
        "sort_key": sort_key(went_public(policy["publish_at"], policy["created_at"]), policy["id"]),
        "policy_id": policy["id"],
        "terms": tsvector(terms) if dialect == "postgresql" else " ".join(terms),
        "changed_at": changed_at,
    }


async def reindex(conn: AsyncConnection, policy_id: int, districts: Iterable[str], changed_at: datetime) -> None:
    """Rewrite the policy's index row from the policy as it is now (in the caller's transaction);
    a policy the index does not hold has none."""
    policy = (await conn.execute(sa.select(policies).where(P.id == policy_id))).mappings().first()
    await conn.execute(sa.delete(policy_search).where(S.policy_id == policy_id))
    if policy is not None and indexed(policy):
        await conn.execute(sa.insert(policy_search).values(search_row(conn.dialect.name, policy, districts, changed_at)))


def _matching(dialect: str, query: Query, until: int) -> sa.Select[tuple[int]]:
    """The sort keys of the listed policies matching `query` (every listed one if it is empty),
    newest first: one table, one index, no join."""
    if not query:
        return sa.select(S.sort_key).where(S.sort_key <= until).order_by(S.sort_key.desc())
    if dialect == "sqlite":
        return (sa.select(_FTS.c.rowid)
                .where(sa.literal_column(SEARCH_FTS_TABLE).op("MATCH")(fts5_match(query)), _FTS.c.rowid <= until)
                .order_by(_FTS.c.rowid.desc()))
    return (sa.select(S.sort_key).where(S.terms.op("@@")(sa.cast(tsquery(query), TSQUERY)), S.sort_key <= until)
            .order_by(S.sort_key.desc()))


async def search(conn: AsyncConnection, query: Query, *, offset: int, limit: int,
                 count_up_to: int | None) -> tuple[list[int], int]:
    """(the policy ids of one page of matches, newest first; how many match, counted up to
    `count_up_to`: a count of every match of a one-character word would read most of the index for
    a number nobody pages through). `count_up_to` None: no count beyond the page's."""
    matching = _matching(conn.dialect.name, query, listed_until(now()))
    ids = [policy_of(key) for key in (await conn.execute(matching.offset(offset).limit(limit))).scalars()]
    if count_up_to is None or 0 < len(ids) < limit or (offset == 0 and not ids):
        return ids, offset + len(ids)  # the last page: the count is known
    counted = matching.order_by(None).limit(count_up_to).subquery()
    total = (await conn.execute(sa.select(sa.func.count()).select_from(counted))).scalar_one()
    return ids, total


async def listed_policies(conn: AsyncConnection, ids: list[int]) -> list[dict[str, Any]]:
    """What a listing or a feed shows of each policy, in the order of `ids`."""
    if not ids:
        return []
    rows = await conn.execute(
        sa.select(P.id, P.title, P.doc_number, P.summary, P.domain, P.status, P.revision, P.publish_at,
                  P.created_at, P.repealed_on, P.expires_on, S.changed_at, departments.c.name.label("department"))
        .join(policy_search, S.policy_id == P.id)
        .join(departments, departments.c.id == P.department_id)
        .where(P.id.in_(ids))
    )
    found = {r.id: dict(r._mapping) for r in rows}
    return [found[i] for i in ids if i in found]


async def listed_departments(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The departments with at least one public policy, by name: the department filter's choices.
    (Over policies alone: each department's first such row by its index, joined with the index
    PostgreSQL chose to read every department's policies.)"""
    D = departments.c
    has_listed = (sa.select(P.id).where(P.department_id == D.id, P.status.in_(LISTED_STATUSES), P.test.is_(False),
                                        P.disclosure == "proactive").exists())
    rows = await conn.execute(sa.select(D.id, D.name).where(has_listed).order_by(D.name))
    return [dict(r._mapping) for r in rows]

"""Targeting compiled to SQL: which subscribers, on which channels, a policy reaches.

Every clause becomes `subscriber.id IN (ids of members of the group whose attribute satisfies
the op)`; both backends materialise such an uncorrelated subquery once, so a million-row match is
one pass over `subscribers` with hash or index probes, streamed in id order.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import AllOf, Clause, Not, Predicate, Targeting
from pushsvc.store.schema import (
    subscriber_attributes,
    subscriber_audiences,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)

S = subscribers.c
A = subscriber_audiences.c
V = subscriber_attributes.c


def _encoded(value: Any) -> str:
    """The stored form of a value (see subscriber_attributes)."""
    return json.dumps(value, ensure_ascii=False)


def _clause_condition(c: Clause) -> sa.ColumnElement[bool]:
    members = sa.select(V.subscriber_id).where(V.audience == c.group, V.name == c.attr)
    if c.op == "exists":
        return S.id.in_(members) if c.value else S.id.not_in(members)
    if c.op in ("gte", "lte"):
        if c.attribute.type in ("integer", "number"):
            column, bound = V.num, c.value
        else:  # dates: ISO text in JSON quotes orders like the dates themselves
            column, bound = V.value, _encoded(c.value)
        cond = column >= bound if c.op == "gte" else column <= bound
    elif c.op == "eq":
        cond = V.value == _encoded(c.value)
    else:
        cond = V.value.in_([_encoded(v) for v in c.value])
        if c.op == "not_in":
            cond = sa.not_(cond)
    return S.id.in_(members.where(cond))


def predicate_condition(p: Predicate) -> sa.ColumnElement[bool]:
    if isinstance(p, Clause):
        return _clause_condition(p)
    if isinstance(p, Not):
        return sa.not_(predicate_condition(p.item))
    parts = [predicate_condition(item) for item in p.items]
    return sa.and_(*parts) if isinstance(p, AllOf) else sa.or_(*parts)


def implies_membership(p: Predicate, groups: frozenset[str]) -> bool:
    """Whether every subscriber satisfying `p` is a member of one of `groups`: then the membership
    test is implied and the query can skip it (a clause holds only for its group's members)."""
    if isinstance(p, Clause):
        return p.group in groups and not (p.op == "exists" and p.value is False)
    if isinstance(p, Not):
        return False
    implied = [implies_membership(item, groups) for item in p.items]
    return any(implied) if isinstance(p, AllOf) else all(implied)


def audience_condition(targeting: Targeting, domain: str) -> list[sa.ColumnElement[bool]]:
    """Everything about a subscriber that decides a match, channels aside."""
    conds: list[sa.ColumnElement[bool]] = [S.status == "active"]
    where = targeting.where
    if where is None or not implies_membership(where, frozenset(targeting.audiences)):
        conds.append(S.id.in_(sa.select(A.subscriber_id).where(A.audience.in_(targeting.audiences))))
    conds += [
        S.id.in_(
            sa.select(subscriber_domains.c.subscriber_id).where(
                subscriber_domains.c.domain.in_([domain, ALL_DOMAINS])
            )
        ),
    ]
    if where is not None:
        conds.append(predicate_condition(where))
    return conds


def matching_pairs(
    targeting: Targeting, domain: str, channels: list[str], after_id: int = 0
) -> sa.Select[tuple[int, str, str]]:
    """(subscriber id, channel, frequency) for every message a policy sends, by subscriber id."""
    C = subscriber_channels.c
    return (
        sa.select(S.id, C.channel, S.frequency)
        .select_from(subscribers.join(subscriber_channels, C.subscriber_id == S.id))
        .where(S.id > after_id, C.channel.in_(channels), *audience_condition(targeting, domain))
        # The same order named by the channels' columns: SQLite then walks their (channel,
        # subscriber_id) index in order and streams, where ordering by subscribers.id made it sort
        # every match before the first row (measured on 1M subscribers: first row 2.1 s, now 0.6 s).
        .order_by(C.subscriber_id, C.channel)
    )


def preview_queries(
    targeting: Targeting, domain: str, channels: list[str], department_id: int | None
) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """Counts without storing anything: total reached, per channel, per audience group; each count
    followed by how many of those the department supplied (for None, the operator: all of them)."""
    C = subscriber_channels.c
    reached = (
        sa.select(C.subscriber_id)
        .where(C.channel.in_(channels))
        .distinct()
    )
    base = audience_condition(targeting, domain)
    own = sa.func.count() if department_id is None else sa.func.count(sa.case((S.department_id == department_id, 1)))
    counts = (sa.func.count(), own)
    total = sa.select(*counts).select_from(subscribers).where(*base, S.id.in_(reached))
    by_channel = (
        sa.select(C.channel, *counts)
        .select_from(subscribers.join(subscriber_channels, C.subscriber_id == S.id))
        .where(C.channel.in_(channels), *base)
        .group_by(C.channel)
    )
    matched_ids = sa.select(S.id).where(*base, S.id.in_(reached))
    by_audience = (
        sa.select(A.audience, *counts)
        .select_from(subscriber_audiences.join(subscribers, S.id == A.subscriber_id))
        .where(A.audience.in_(targeting.audiences), A.subscriber_id.in_(matched_ids))
        .group_by(A.audience)
    )
    return total, by_channel, by_audience

"""Targeting compiled to SQL: which subscribers, on which channels, a policy reaches.

Every clause becomes `subscriber.id IN (ids of members of the group whose attribute satisfies
the op)`; both backends materialise such an uncorrelated subquery once, so a million-row match is
one pass over `subscribers` with hash or index probes, streamed in id order.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import AllOf, AnyOf, Clause, Not, Predicate, Targeting
from pushsvc.store.schema import subscriber_audiences, subscriber_channels, subscriber_domains, subscribers

S = subscribers.c
A = subscriber_audiences.c


def _typed(expr: Any, attr_type: str) -> Any:
    if attr_type == "integer":
        return expr.as_integer()
    if attr_type == "number":
        return expr.as_float()
    if attr_type == "boolean":
        return expr.as_boolean()
    return expr.as_string()


def _clause_condition(c: Clause) -> sa.ColumnElement[bool]:
    json_value = A.attrs[c.attr]
    if c.op == "exists":
        present = A.attrs[c.attr].as_string().is_not(None)
        members = sa.select(A.subscriber_id).where(A.audience == c.group, present)
        return S.id.in_(members) if c.value else S.id.not_in(members)
    value = _typed(json_value, c.attribute.type)
    ops = {
        "eq": lambda: value == c.value,
        "in": lambda: value.in_(list(c.value)),
        "not_in": lambda: sa.and_(value.is_not(None), value.not_in(list(c.value))),
        "gte": lambda: value >= c.value,
        "lte": lambda: value <= c.value,
    }
    cond = ops[c.op]()
    return S.id.in_(sa.select(A.subscriber_id).where(A.audience == c.group, cond))


def predicate_condition(p: Predicate) -> sa.ColumnElement[bool]:
    if isinstance(p, Clause):
        return _clause_condition(p)
    if isinstance(p, Not):
        return sa.not_(predicate_condition(p.item))
    parts = [predicate_condition(item) for item in p.items]
    return sa.and_(*parts) if isinstance(p, AllOf) else sa.or_(*parts)


def audience_condition(targeting: Targeting, domain: str) -> list[sa.ColumnElement[bool]]:
    """Everything about a subscriber that decides a match, channels aside."""
    conds: list[sa.ColumnElement[bool]] = [
        S.status == "active",
        S.id.in_(sa.select(A.subscriber_id).where(A.audience.in_(targeting.audiences))),
        S.id.in_(
            sa.select(subscriber_domains.c.subscriber_id).where(
                subscriber_domains.c.domain.in_([domain, ALL_DOMAINS])
            )
        ),
    ]
    if targeting.where is not None:
        conds.append(predicate_condition(targeting.where))
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
        .order_by(S.id, C.channel)
    )


def preview_queries(
    targeting: Targeting, domain: str, channels: list[str]
) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """Counts without storing anything: total reached, per channel, per audience group."""
    C = subscriber_channels.c
    reached = (
        sa.select(C.subscriber_id)
        .where(C.channel.in_(channels))
        .distinct()
    )
    base = audience_condition(targeting, domain)
    total = sa.select(sa.func.count()).select_from(subscribers).where(*base, S.id.in_(reached))
    by_channel = (
        sa.select(C.channel, sa.func.count())
        .select_from(subscribers.join(subscriber_channels, C.subscriber_id == S.id))
        .where(C.channel.in_(channels), *base)
        .group_by(C.channel)
    )
    matched_ids = sa.select(S.id).where(*base, S.id.in_(reached))
    by_audience = (
        sa.select(A.audience, sa.func.count())
        .where(A.audience.in_(targeting.audiences), A.subscriber_id.in_(matched_ids))
        .group_by(A.audience)
    )
    return total, by_channel, by_audience

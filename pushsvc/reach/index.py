"""The reach index: everything about subscribers that decides a match, as roaring bitmaps of ids,
and a targeting rule evaluated as bitmap algebra with exactly the semantics of the SQL matcher
(`store/matching.py`), so that a preview's counts equal what the fan-out then sends.

One bitmap per subscriber status, supplying department, audience group, domain and channel; per
attribute column (group, name) one of its holders and, except for sparse columns, one per stored
value (the JSON text SQL compares), with the value's number for `gte`/`lte`. A sparse column (free
text such as credit codes: as many values as holders) keeps only its holders; its `eq`/`in`
clauses are looked up in SQL by the caller (a few index probes) and handed in.

Why bitmaps: a three-clause rule over 3,000,000 subscribers is a handful of unions and
intersections of compressed sets (milliseconds), where SQL must visit every matching row.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyroaring import BitMap

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import AllOf, Clause, Not, Predicate, Targeting
from pushsvc.store.reach_index import Pair, ReachCounts

NUMERIC = ("integer", "number")
EMPTY = BitMap()


def sparse_columns(catalogue: Catalogue) -> frozenset[tuple[str, str]]:
    """Free-text attributes: a bitmap per value would cost more than the column is worth."""
    return frozenset((g.slug, a.name) for g in catalogue.groups.values() for a in g.attributes.values()
                     if a.type == "string" and a.choices is None)


def encoded_value(value: Any) -> str:
    """A value as `subscriber_attributes.value` stores it and SQL compares it: its JSON text."""
    return json.dumps(value, ensure_ascii=False)


def stored_number(text: str) -> float | None:
    """`subscriber_attributes.num` for a stored value: the number itself, for numbers only
    (store/subscribers.py `attribute_row`), as the float column holds it."""
    value = json.loads(text)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_ids(text: str) -> BitMap:
    return BitMap(array("I", map(int, text.split(","))))


@dataclass
class Column:
    """One attribute (group, name): who holds it, and who holds each value (dense columns)."""

    holders: BitMap = field(default_factory=BitMap)
    values: dict[str, BitMap] = field(default_factory=dict)  # JSON text -> holders of that value
    numbers: dict[str, float] = field(default_factory=dict)  # JSON text -> `num` as stored
    _by_number: tuple[list[float], list[str]] | None = None  # sorted, built on the first range query
    _by_text: list[str] | None = None

    def add_value(self, text: str, number: float | None, ids: BitMap) -> None:
        self.holders |= ids
        if text in self.values:
            self.values[text] |= ids
            return
        self.values[text] = BitMap(ids)
        if number is not None:
            self.numbers[text] = number
        self._by_number = self._by_text = None

    def ranged(self, op: str, bound: Any, numeric: bool) -> BitMap:
        """Holders of a value >= or <= `bound`: by `num` for numbers (values without one never
        match, as NULL in SQL), by the JSON text for dates (ISO dates order as text). The union
        is taken over the smaller side: the holders minus the values outside the range."""
        if numeric:
            if self._by_number is None:
                ordered = sorted(self.numbers.items(), key=lambda kv: kv[1])
                self._by_number = ([n for _, n in ordered], [t for t, _ in ordered])
            keys, texts = self._by_number
            inside = texts[bisect_left(keys, bound):] if op == "gte" else texts[:bisect_right(keys, bound)]
        else:
            if self._by_text is None:
                self._by_text = sorted(self.values)
            keys = texts = self._by_text
            inside = texts[bisect_left(keys, bound):] if op == "gte" else texts[:bisect_right(keys, bound)]
        if len(inside) * 2 <= len(self.values):
            return BitMap.union(EMPTY, *(self.values[t] for t in inside))
        outside = set(self.values) - set(inside)
        return self.holders - BitMap.union(EMPTY, *(self.values[t] for t in outside))

    def forget(self, ids: BitMap) -> None:
        self.holders -= ids
        emptied = []
        for text, members in self.values.items():
            members -= ids
            if not members:
                emptied.append(text)
        for text in emptied:  # a value nobody holds any more: gone from the range lists too
            del self.values[text]
            self.numbers.pop(text, None)
        if emptied:
            self._by_number = self._by_text = None


@dataclass
class ReachIndex:
    statuses: dict[str, BitMap] = field(default_factory=dict)
    departments: dict[int, BitMap] = field(default_factory=dict)
    audiences: dict[str, BitMap] = field(default_factory=dict)
    domains: dict[str, BitMap] = field(default_factory=dict)
    channels: dict[str, BitMap] = field(default_factory=dict)
    columns: dict[tuple[str, str], Column] = field(default_factory=dict)

    def add(self, kind: str, key: tuple[Any, ...], ids: BitMap) -> None:
        """Fold one group of a read (store/reach_index.py `read_audience_data`) into the index."""
        if kind == "has":
            self.columns.setdefault((key[0], key[1]), Column()).holders |= ids
        elif kind == "value":
            self.columns.setdefault((key[0], key[1]), Column()).add_value(key[2], stored_number(key[2]), ids)
        else:
            into: dict[Any, BitMap] = getattr(self, _SETS[kind])
            if key[0] in into:
                into[key[0]] |= ids
            else:
                into[key[0]] = BitMap(ids)

    def forget(self, ids: BitMap) -> None:
        """Take these subscribers out of everything, before their rows are read again."""
        for sets in (self.statuses, self.departments, self.audiences, self.domains, self.channels):
            for members in sets.values():
                members -= ids
        for column in self.columns.values():
            if column.holders.intersect(ids):
                column.forget(ids)

    def compact(self) -> None:
        """Run-length containers where they are smaller (ids given in bulk are often runs), and no
        spare capacity: done once after a build."""
        for members in self._every():
            members.run_optimize()
            members.shrink_to_fit()

    def _every(self) -> list[BitMap]:
        every = [m for sets in (self.statuses, self.departments, self.audiences, self.domains, self.channels)
                 for m in sets.values()]
        return every + [m for c in self.columns.values() for m in (c.holders, *c.values.values())]

    def sizes(self) -> dict[str, int]:
        """Bytes the bitmaps take serialised (about their size in memory) and how many there are."""
        every = self._every()
        return {"bitmaps": len(every), "bytes": sum(len(m.serialize()) for m in every)}

    def counts(self, targeting: Targeting, domain: str, channels: list[str], department_id: int | None,
               looked_up: dict[int, BitMap]) -> ReachCounts:
        """The preview's counts (store/matching.py `preview_queries`). `looked_up`: for each
        sparse-column clause (by `id(clause)`), the subscribers SQL found for it (`sparse_lookups`)."""
        active = self.statuses.get("active", EMPTY)
        base = active & _union(self.audiences.get(g) for g in targeting.audiences)
        base &= _union((self.domains.get(domain), self.domains.get(ALL_DOMAINS)))
        if targeting.where is not None:
            base &= self._holds(targeting.where, active, looked_up)
        matched = base & _union(self.channels.get(c) for c in channels)
        own = None if department_id is None else self.departments.get(department_id, EMPTY)

        def pair(members: BitMap) -> Pair:
            return len(members), len(members) if own is None else members.intersection_cardinality(own)

        return ReachCounts(
            total=pair(matched),
            by_channel={c: pair(base & self.channels.get(c, EMPTY)) for c in channels},
            by_audience={g: pair(matched & self.audiences.get(g, EMPTY)) for g in targeting.audiences},
        )

    def _holds(self, p: Predicate, everyone: BitMap, looked_up: dict[int, BitMap]) -> BitMap:
        """Who satisfies `p` among `everyone` (the active: nothing else can match anyway)."""
        if isinstance(p, Clause):
            return self._clause(p, everyone, looked_up)
        if isinstance(p, Not):
            return everyone - self._holds(p.item, everyone, looked_up)
        parts = [self._holds(item, everyone, looked_up) for item in p.items]
        if isinstance(p, AllOf):
            result = parts[0]
            for part in parts[1:]:
                result = result & part
            return result
        return BitMap.union(EMPTY, *parts)

    def _clause(self, c: Clause, everyone: BitMap, looked_up: dict[int, BitMap]) -> BitMap:
        column = self.columns.get((c.group, c.attr), Column())
        if c.op == "exists":
            return column.holders if c.value else everyone - column.holders
        if id(c) in looked_up:  # a sparse column: SQL found the holders of the value(s)
            found = looked_up[id(c)]
            return column.holders - found if c.op == "not_in" else found
        if c.op in ("gte", "lte"):
            numeric = c.attribute.type in NUMERIC
            return column.ranged(c.op, c.value if numeric else encoded_value(c.value), numeric)
        values = (c.value,) if c.op == "eq" else c.value
        found = _union(column.values.get(encoded_value(v)) for v in values)
        return column.holders - found if c.op == "not_in" else found


_SETS = {"status": "statuses", "department": "departments", "audience": "audiences", "domain": "domains",
         "channel": "channels"}


def _union(sets: Iterable[BitMap | None]) -> BitMap:
    return BitMap.union(EMPTY, *(s for s in sets if s is not None))


def sparse_clauses(p: Predicate | None, sparse: frozenset[tuple[str, str]]) -> list[Clause]:
    """The clauses whose holders SQL must find: value tests on sparse columns."""
    if p is None:
        return []
    if isinstance(p, Clause):
        return [p] if (p.group, p.attr) in sparse and p.op in ("eq", "in", "not_in") else []
    if isinstance(p, Not):
        return sparse_clauses(p.item, sparse)
    return [c for item in p.items for c in sparse_clauses(item, sparse)]

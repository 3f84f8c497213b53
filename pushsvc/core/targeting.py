"""Targeting predicates: parsed and checked against the audience schemas, and evaluated for `explain`.

Semantics shared with the SQL compiler (store/matching.py): a clause `group.attr op value` holds
only when the subscriber belongs to `group` and has `attr` satisfying the op; `not` negates a whole
predicate, so `not (x in [...])` also holds for subscribers who lack the attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from pushsvc.core.catalogue import Attribute, Catalogue
from pushsvc.core.errors import FieldError

OPS = ("eq", "in", "not_in", "exists", "gte", "lte")
ORDERED_TYPES = ("integer", "number", "date")
MAX_DEPTH = 8
MAX_CLAUSES = 100
MAX_LIST = 500


@dataclass(frozen=True)
class Clause:
    group: str
    attr: str
    op: str
    value: Any
    attribute: Attribute


@dataclass(frozen=True)
class AllOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    item: Predicate


Predicate = Union[Clause, AllOf, AnyOf, Not]


@dataclass(frozen=True)
class Targeting:
    audiences: tuple[str, ...]
    where: Predicate | None


class _Parser:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.errors: list[FieldError] = []
        self.clauses = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def predicate(self, raw: Any, path: str, depth: int) -> Predicate | None:
        if depth > MAX_DEPTH:
            self.fail(path, f"predicates may nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(raw, dict):
            self.fail(path, "must be an object: {all|any|not: ...} or {attr, op, value}")
            return None
        keys = set(raw)
        for combinator in ("all", "any"):
            if keys == {combinator}:
                return self.combination(combinator, raw[combinator], f"{path}.{combinator}", depth)
        if keys == {"not"}:
            inner = self.predicate(raw["not"], f"{path}.not", depth + 1)
            return None if inner is None else Not(inner)
        if "attr" in keys and "op" in keys and keys <= {"attr", "op", "value"}:
            return self.clause(raw, path)
        self.fail(path, "must have exactly one of all, any, not; or attr, op and value")
        return None

    def combination(self, kind: str, raw: Any, path: str, depth: int) -> Predicate | None:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a non-empty list of predicates")
            return None
        items = [self.predicate(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(raw)]
        if any(item is None for item in items):
            return None
        parts = tuple(item for item in items if item is not None)
        return AllOf(parts) if kind == "all" else AnyOf(parts)

    def clause(self, raw: dict[str, Any], path: str) -> Clause | None:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            if self.clauses == MAX_CLAUSES + 1:
                self.fail(path, f"at most {MAX_CLAUSES} clauses are allowed")
            return None
        attr_path, op = raw["attr"], raw["op"]
        if not isinstance(attr_path, str) or attr_path.count(".") != 1:
            self.fail(f"{path}.attr", "must be '<group>.<attribute>'")
            return None
        group_slug, attr_name = attr_path.split(".")
        group = self.catalogue.groups.get(group_slug)
        if group is None:
            self.fail(f"{path}.attr", f"unknown audience group '{group_slug}'")
            return None
        attribute = group.attributes.get(attr_name)
        if attribute is None:
            self.fail(f"{path}.attr", f"group '{group_slug}' has no attribute '{attr_name}'")
            return None
        if op not in OPS:
            self.fail(f"{path}.op", f"must be one of {', '.join(OPS)}")
            return None
        value = self.value(attribute, op, raw.get("value"), "value" in raw, f"{path}.value")
        if value is _INVALID:
            return None
        return Clause(group_slug, attr_name, op, value, attribute)

    def value(self, attribute: Attribute, op: str, raw: Any, given: bool, path: str) -> Any:
        if op == "exists":
            if given and not isinstance(raw, bool):
                self.fail(path, "must be true or false for 'exists'")
                return _INVALID
            return raw if given else True
        if not given:
            self.fail(path, f"is required for '{op}'")
            return _INVALID
        if op in ("gte", "lte") and attribute.type not in ORDERED_TYPES:
            self.fail(path, f"'{op}' needs an attribute of type {', '.join(ORDERED_TYPES)}, not {attribute.type}")
            return _INVALID
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw or len(raw) > MAX_LIST:
                self.fail(path, f"must be a list of 1 to {MAX_LIST} values for '{op}'")
                return _INVALID
            values = [self.one(attribute, item, f"{path}[{i}]") for i, item in enumerate(raw)]
            return _INVALID if _INVALID in values else tuple(values)
        return self.one(attribute, raw, path)

    def one(self, attribute: Attribute, raw: Any, path: str) -> Any:
        if isinstance(raw, (list, dict)) or raw is None:
            self.fail(path, "must be a single value")
            return _INVALID
        try:
            return attribute.validate(raw)
        except ValueError as exc:
            self.fail(path, str(exc))
            return _INVALID


_INVALID = object()


def parse_targeting(raw: Any, catalogue: Catalogue, path: str = "targeting") -> tuple[Targeting | None, list[FieldError]]:
    """Check a targeting object against the catalogue; errors name the path in the request body."""
    parser = _Parser(catalogue)
    if not isinstance(raw, dict):
        return None, [FieldError(path, "must be an object with 'audiences' and optional 'where'")]
    for key in raw:
        if key not in ("audiences", "where"):
            parser.fail(f"{path}.{key}", "unknown field")
    audiences = raw.get("audiences")
    if not isinstance(audiences, list) or not audiences:
        parser.fail(f"{path}.audiences", "must be a non-empty list of audience group slugs")
        audiences = []
    for i, slug in enumerate(audiences):
        if slug not in catalogue.groups:
            parser.fail(f"{path}.audiences[{i}]", f"unknown audience group '{slug}'")
    where = None
    if raw.get("where") is not None:
        where = parser.predicate(raw["where"], f"{path}.where", 1)
    if parser.errors:
        return None, parser.errors
    return Targeting(tuple(dict.fromkeys(audiences)), where), []


def targeting_to_json(targeting: Targeting) -> dict[str, Any]:
    """The canonical stored form (values normalised), which parses back to the same Targeting."""
    out: dict[str, Any] = {"audiences": list(targeting.audiences)}
    if targeting.where is not None:
        out["where"] = _predicate_json(targeting.where)
    return out


def _predicate_json(p: Predicate) -> dict[str, Any]:
    if isinstance(p, Clause):
        value = list(p.value) if isinstance(p.value, tuple) else p.value
        return {"attr": f"{p.group}.{p.attr}", "op": p.op, "value": value}
    if isinstance(p, Not):
        return {"not": _predicate_json(p.item)}
    return {("all" if isinstance(p, AllOf) else "any"): [_predicate_json(i) for i in p.items]}


def clause_holds(clause: Clause, attrs_by_group: dict[str, dict[str, Any]]) -> bool:
    attrs = attrs_by_group.get(clause.group)
    if attrs is None or clause.attr not in attrs:
        return clause.op == "exists" and clause.value is False
    actual = attrs[clause.attr]
    if clause.op == "exists":
        return bool(clause.value)
    if clause.op == "eq":
        return actual == clause.value
    if clause.op == "in":
        return actual in clause.value
    if clause.op == "not_in":
        return actual not in clause.value
    if clause.op == "gte":
        return actual >= clause.value
    return actual <= clause.value


def evaluate(
    p: Predicate, attrs_by_group: dict[str, dict[str, Any]], path: str = "where", *, with_values: bool = True
) -> tuple[bool, list[str]]:
    """Evaluate a predicate for one subscriber, with a reason line per clause that decided it.
    `with_values=False` leaves the subscriber's values out of the lines (pass or fail only), for a
    reader who may know whether a record matches but not what it holds."""
    if isinstance(p, Clause):
        ok = clause_holds(p, attrs_by_group)
        value = list(p.value) if isinstance(p.value, tuple) else p.value
        line = f"{path}: {p.group}.{p.attr} {p.op} {value!r} {'holds' if ok else 'fails'}"
        if with_values:
            line += f" (value: {attrs_by_group.get(p.group, {}).get(p.attr, '(absent)')!r})"
        return ok, [line]
    if isinstance(p, Not):
        ok, reasons = evaluate(p.item, attrs_by_group, f"{path}.not", with_values=with_values)
        return not ok, reasons + [f"{path}: not -> {'holds' if not ok else 'fails'}"]
    key = "all" if isinstance(p, AllOf) else "any"
    results = [evaluate(item, attrs_by_group, f"{path}.{key}[{i}]", with_values=with_values)
               for i, item in enumerate(p.items)]
    oks = [ok for ok, _ in results]
    ok = all(oks) if key == "all" else any(oks)
    # Report what decided it: for a failed `all` the failing clauses, for a held `any` the holding ones.
    return ok, [r for (item_ok, rs) in results if item_ok == ok for r in rs]

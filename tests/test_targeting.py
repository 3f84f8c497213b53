"""Targeting predicates checked against the catalogue and evaluated, with no servers."""

from __future__ import annotations

import pytest

from pushsvc.core.catalogue import Catalogue, load_catalogue
from pushsvc.core.targeting import evaluate, parse_targeting, targeting_to_json
from pushsvc.settings import REPO_ROOT


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(REPO_ROOT / "audiences")


WHERE = {"all": [
    {"attr": "enterprise.district", "op": "in", "value": ["haizhu", "tianhe"]},
    {"attr": "enterprise.scale", "op": "in", "value": ["small", "micro"]},
    {"not": {"attr": "enterprise.high_tech", "op": "eq", "value": True}},
]}


def test_valid_targeting_round_trips(catalogue: Catalogue) -> None:
    t, errors = parse_targeting({"audiences": ["enterprise", "market_entity"], "where": WHERE}, catalogue)
    assert errors == [] and t is not None
    again, _ = parse_targeting(targeting_to_json(t), catalogue)
    assert again == t


@pytest.mark.parametrize(
    ("where", "path", "fragment"),
    [
        ({"all": [{"attr": "nobody.district", "op": "eq", "value": "haizhu"}]}, "targeting.where.all[0].attr", "unknown audience group"),
        ({"all": [{"attr": "enterprise.colour", "op": "eq", "value": "red"}]}, "targeting.where.all[0].attr", "no attribute"),
        ({"any": [{"attr": "enterprise.district", "op": "in", "value": ["haizhu", "atlantis"]}]}, "targeting.where.any[0].value[1]", ""),
        ({"attr": "enterprise.district", "op": "like", "value": "x"}, "targeting.where.op", "must be one of"),
        ({"attr": "enterprise.district", "op": "gte", "value": "haizhu"}, "targeting.where.value", "needs an attribute of type"),
        ({"attr": "enterprise.employees", "op": "gte", "value": "many"}, "targeting.where.value", ""),
        ({"not": {"all": []}}, "targeting.where.not.all", "non-empty"),
        ({"all": [{"attr": "enterprise.scale"}]}, "targeting.where.all[0]", "exactly one of"),
        ({"attr": "enterprise.scale", "op": "in", "value": "small"}, "targeting.where.value", "list"),
    ],
)
def test_bad_predicates_name_the_path(catalogue: Catalogue, where: dict, path: str, fragment: str) -> None:
    t, errors = parse_targeting({"audiences": ["enterprise"], "where": where}, catalogue)
    assert t is None
    assert any(e.field == path and fragment in e.message for e in errors), errors


def test_unknown_audience_named(catalogue: Catalogue) -> None:
    _, errors = parse_targeting({"audiences": ["enterprise", "aliens"]}, catalogue)
    assert [e.field for e in errors] == ["targeting.audiences[1]"]


def test_too_deep_is_refused(catalogue: Catalogue) -> None:
    where: dict = {"attr": "enterprise.scale", "op": "eq", "value": "small"}
    for _ in range(10):
        where = {"not": where}
    _, errors = parse_targeting({"audiences": ["enterprise"], "where": where}, catalogue)
    assert errors and "nest" in errors[0].message


def test_evaluate_explains(catalogue: Catalogue) -> None:
    t, _ = parse_targeting({"audiences": ["enterprise"], "where": WHERE}, catalogue)
    assert t is not None and t.where is not None
    ok, reasons = evaluate(t.where, {"enterprise": {"district": "haizhu", "scale": "small"}})
    assert ok and len(reasons) == 4  # three clauses, plus the verdict of `not`
    ok, reasons = evaluate(t.where, {"enterprise": {"district": "yuexiu", "scale": "small"}})
    assert not ok and reasons == ["where.all[0]: enterprise.district in ['haizhu', 'tianhe'] fails (value: 'yuexiu')"]
    # A clause on a group the subscriber is not in fails; `not` of it holds.
    ok, _ = evaluate(t.where, {"taxpayer": {"district": "haizhu"}})
    assert not ok


def test_values_are_normalised(catalogue: Catalogue) -> None:
    t, errors = parse_targeting(
        {"audiences": ["enterprise"], "where": {"attr": "enterprise.employees", "op": "gte", "value": "10"}}, catalogue
    )
    assert not errors and t is not None
    assert targeting_to_json(t)["where"]["value"] == 10

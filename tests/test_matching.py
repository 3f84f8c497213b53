"""Targeting compiled to SQL finds exactly whom the Python evaluator finds, on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from pushsvc.core.catalogue import load_catalogue
from pushsvc.core.subscribers import Contacts, NewSubscriber
from pushsvc.core.targeting import evaluate, parse_targeting
from pushsvc.dev.demo_data import HOME_DOMAIN, samples
from pushsvc.settings import REPO_ROOT
from pushsvc.store.db import Database
from pushsvc.store.matching import matching_pairs
from pushsvc.store.subscribers import insert_subscribers, load_subscriber

CATALOGUE = load_catalogue(REPO_ROOT / "audiences")
RULES: list[dict[str, Any]] = [
    {"audiences": ["enterprise"]},
    {"audiences": ["enterprise", "market_entity"],
     "where": {"all": [{"attr": "enterprise.district", "op": "in", "value": ["haizhu", "tianhe"]},
                       {"attr": "enterprise.scale", "op": "in", "value": ["small", "micro"]}]}},
    {"audiences": ["enterprise", "taxpayer"],
     "where": {"any": [{"attr": "enterprise.employees", "op": "gte", "value": 50},
                       {"attr": "taxpayer.taxpayer_type", "op": "eq", "value": "small_scale"}]}},
    {"audiences": ["enterprise"], "where": {"not": {"attr": "enterprise.high_tech", "op": "eq", "value": True}}},
    {"audiences": ["enterprise"], "where": {"attr": "enterprise.employees", "op": "exists", "value": False}},
    {"audiences": ["aid_recipient"], "where": {"all": [{"attr": "aid_recipient.household_size", "op": "lte", "value": 3},
                                                       {"attr": "aid_recipient.district", "op": "not_in", "value": ["yuexiu"]}]}},
    {"audiences": ["market_entity", "tech_talent"],
     "where": {"any": [{"attr": "enterprise.scale", "op": "eq", "value": "small"},
                       {"not": {"attr": "market_entity.district", "op": "eq", "value": "baiyun"}}]}},
]


@pytest.mark.parametrize("rule", RULES, ids=[f"rule{i}" for i in range(len(RULES))])
async def test_sql_matches_python(database_url: str, rule: dict[str, Any]) -> None:
    db = Database(database_url)
    subs = list(samples(CATALOGUE, 400))
    new = [
        NewSubscriber(name=s.name, contacts=Contacts(email=f"m{i}@example.com"), uscc=None, audiences=s.audiences,
                      domains=tuple(s.domains), channels=("email",))
        for i, s in enumerate(subs)
    ]
    async with db.write() as conn:
        ids = await insert_subscribers(conn, new, status="active", source="test", department_id=None)
    targeting, errors = parse_targeting(rule, CATALOGUE)
    assert targeting is not None, errors
    async with db.read() as conn:
        got = [sid for sid, _, _ in await conn.execute(matching_pairs(targeting, HOME_DOMAIN, ["email"]))]
        expected = []
        for sid in ids:
            sub = await load_subscriber(conn, sid)
            assert sub is not None
            in_groups = any(g in sub["audiences"] for g in targeting.audiences)
            in_domain = HOME_DOMAIN in sub["domains"] or "*" in sub["domains"]
            holds = targeting.where is None or evaluate(targeting.where, sub["audiences"])[0]
            if in_groups and in_domain and holds:
                expected.append(sid)
    await db.close()
    assert got == expected and 0 < len(got) < len(ids)

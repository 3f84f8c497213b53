"""The live reach index counts exactly what the SQL matcher counts (the fan-out's own query), for
random rules over random subscribers, and follows the database's changes; the API's preview uses it."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from bench.common import catalogue
from bench.reach import parsed, random_predicate
from pushsvc.core.catalogue import Catalogue
from pushsvc.core.subscribers import Contacts, NewSubscriber
from pushsvc.core.targeting import Targeting
from pushsvc.dev.demo_data import SampleFactory
from pushsvc.reach.live import LiveReach
from pushsvc.settings import REPO_ROOT
from pushsvc.store.db import Database
from pushsvc.store.reach_index import ReachCounts, counted_by_sql
from pushsvc.store.schema import departments, subscriber_channels, subscriber_domains, subscribers
from pushsvc.store.self_service import erase, set_paused, switch_off
from pushsvc.store.subscribers import correct, insert_subscribers, remove_channel
from tests.conftest import Api

CHANNELS = ("email", "sms", "wechat")
DEPARTMENTS = (1, 2)


def sample(factory: SampleFactory, i: int) -> NewSubscriber:
    s = factory.make(i)
    codes = [a["uscc"] for a in s.audiences.values() if "uscc" in a]
    return NewSubscriber(
        name=s.name, contacts=Contacts(email=s.email, phone=s.phone, wechat_openid=s.wechat_openid,
                                       wechat_webhook=s.wechat_webhook),
        uscc=codes[0] if codes else None, audiences=s.audiences, domains=s.domains, channels=s.channels,
    )


async def seed(db: Database, n: int, rng: random.Random) -> list[NewSubscriber]:
    """`n` sample subscribers on mixed channels, supplied by two departments and the admin, some
    of them paused, unsubscribed or pending."""
    factory = SampleFactory(catalogue(), seed=rng.randrange(1000), mixed_channels=True)
    subs = [sample(factory, i) for i in range(1, n + 1)]
    async with db.write() as conn:
        for dep in DEPARTMENTS:
            await conn.execute(sa.insert(departments).values(
                id=dep, name=f"dep{dep}", domains=[], api_key_hash=f"h{dep}", key_prefix=f"p{dep}",
                created_at=sa.func.current_timestamp()))
        for dep in (None, *DEPARTMENTS):
            mine = subs[(dep or 0)::3]
            await insert_subscribers(conn, mine, status="active", source="test", department_id=dep)
        ids = list((await conn.execute(sa.select(subscribers.c.id))).scalars())
        for status in ("paused", "unsubscribed", "pending"):
            chosen = rng.sample(ids, n // 20)
            await conn.execute(sa.update(subscribers).where(subscribers.c.id.in_(chosen)).values(status=status))
    return subs


def random_rule(rng: random.Random, cat: Catalogue, seen: dict[tuple[str, str], list[Any]]
                ) -> tuple[Targeting, str, list[str], int | None]:
    groups = rng.sample(list(cat.groups), rng.randint(1, 3))
    raw: dict[str, Any] = {"audiences": groups}
    if rng.random() < 0.9:
        raw["where"] = random_predicate(rng, cat, groups, seen)
    domain = rng.choice(list(cat.domains))
    channels = rng.sample(CHANNELS, rng.randint(1, 3))
    return parsed(raw, cat), domain, channels, rng.choice([None, *DEPARTMENTS])


def values_held(subs: list[NewSubscriber]) -> dict[tuple[str, str], list[Any]]:
    seen: dict[tuple[str, str], list[Any]] = {}
    for sub in subs:
        for group, attrs in sub.audiences.items():
            for name, value in attrs.items():
                seen.setdefault((group, name), []).append(value)
    return seen


async def assert_equal_counts(db: Database, live: LiveReach, rules: list[Any]) -> int:
    """Every rule counted by the index and by SQL; returns how many reached someone."""
    reached = 0
    for targeting, domain, channels, department_id in rules:
        from_index = await live.counts(targeting, domain, channels, department_id)
        async with db.read() as conn:
            from_sql = await counted_by_sql(conn, targeting, domain, channels, department_id)
        assert isinstance(from_index, ReachCounts)
        assert from_index == from_sql, (targeting, domain, channels, department_id)
        reached += from_sql.total[0] > 0
    return reached


async def test_index_counts_equal_sql_for_random_rules_and_follow_changes(database_url: str) -> None:
    rng = random.Random(19)
    cat = catalogue()
    db = Database(database_url)
    try:
        subs = await seed(db, 3000, rng)
        live = LiveReach(db, cat)
        assert await live.counts(*random_rule(rng, cat, values_held(subs))) is None  # not built yet: SQL answers
        await live.build()
        seen = values_held(subs)
        rules = [random_rule(rng, cat, seen) for _ in range(200)]
        assert await assert_equal_counts(db, live, rules) > 60  # most rules reach someone: a real comparison

        # Changes through the store's own write paths: the index follows each at its next count.
        async with db.write() as conn:
            ids = list((await conn.execute(sa.select(subscribers.c.id).where(subscribers.c.status == "active")
                                           .order_by(subscribers.c.id))).scalars())
            edited, erased, dropped, paused, switched = rng.sample(ids, 5)
            others = sample(SampleFactory(cat, seed=777, mixed_channels=True), 5)
            await correct(conn, edited, replace(others, contacts=Contacts(email="edited@example.com")), "test")
            await erase(conn, erased, "test")
            await remove_channel(conn, dropped, "email", "test")
            await set_paused(conn, paused, True)
            await switch_off(conn, switched, CHANNELS)
            fresh = [sample(SampleFactory(cat, seed=778, mixed_channels=True), i) for i in range(5000, 5100)]
            await insert_subscribers(conn, fresh, status="active", source="test", department_id=2)
        seen = values_held(subs + fresh + [others])
        rules += [random_rule(rng, cat, seen) for _ in range(50)]
        await assert_equal_counts(db, live, rules)

        # A second process's index, built now, agrees too; and one change after it still shows.
        other = LiveReach(db, cat)
        await other.build()
        async with db.write() as conn:
            await erase(conn, ids[-1], "test")
        await assert_equal_counts(db, other, rules[:50])
        await assert_equal_counts(db, live, rules[:50])
    finally:
        await db.close()


async def test_a_change_committed_after_a_later_one_is_not_missed(database_url: str) -> None:
    """PostgreSQL takes sequence numbers before commit: a transaction that noted its change first but
    commits last leaves a gap the index asks about again until it shows up. (SQLite writes one
    transaction at a time: no such gap.)"""
    db = Database(database_url)
    if db.is_sqlite:
        await db.close()
        pytest.skip("SQLite serialises writers")
    rng = random.Random(7)
    cat = catalogue()
    try:
        await seed(db, 200, rng)
        live = LiveReach(db, cat)
        await live.build()
        ids = list((await db_ids(db)))
        everyone = parsed({"audiences": list(cat.groups)}, cat), "*", ["email", "sms", "wechat"], None
        before = await live.counts(*everyone)
        assert before is not None
        async with db.engine.begin() as slow:  # notes its change first, commits last
            await erase(slow, ids[0], "test")
            async with db.write() as quick:
                await erase(quick, ids[1], "test")
            assert await live.counts(*everyone) == await sql_counts(db, everyone)
        assert await live.counts(*everyone) == await sql_counts(db, everyone)
        assert (await sql_counts(db, everyone)).total[0] == before.total[0] - 2
    finally:
        await db.close()


async def db_ids(db: Database) -> list[int]:
    """Active subscribers of every domain ("*") on some channel: each counts in a rule for all."""
    S, D, C = subscribers.c, subscriber_domains.c, subscriber_channels.c
    async with db.read() as conn:
        query = (sa.select(S.id).where(S.status == "active", S.id.in_(sa.select(D.subscriber_id).where(D.domain == "*")),
                                       S.id.in_(sa.select(C.subscriber_id))).order_by(S.id))
        return list((await conn.execute(query)).scalars())


async def sql_counts(db: Database, rule: Any) -> ReachCounts:
    async with db.read() as conn:
        return await counted_by_sql(conn, *rule)


async def test_preview_through_the_api_matches_sql(api: Api, database_url: str) -> None:
    """The preview endpoint answers the same before and after the index is built (the app builds it
    at start): a department's own records counted, others' shown only from 5."""
    dept = await api.department("市科技局", ["employment-entrepreneurship"])
    key = dept["api_key"]
    factory = SampleFactory(catalogue(), seed=5, mixed_channels=True)
    for i in range(1, 8):
        s = factory.make(i)
        body = {"name": s.name, "email": s.email, "audiences": s.audiences, "domains": ["*"], "channels": ["email"]}
        status, answer = await api.call("POST", "/v1/subscribers", key, json=body)
        assert status == 201, answer
    policy = {"title": "关于稳岗补贴的通知", "summary": "稳岗补贴。", "domain": "employment-entrepreneurship",
              "produced_on": "2026-11-20", "channels": ["email"], "targeting": {"audiences": list(catalogue().groups)}}
    for _ in range(3):  # whichever path answers (SQL until built, then the index), the same numbers
        status, body = await api.call("POST", "/v1/policies/preview", key, json=policy)
        assert status == 200, body
        assert body["total"] == 7 and body["by_channel"] == {"email": 7}
    status, _ = await api.call("POST", "/v1/policies/preview", json=policy)
    assert status == 401


def test_bench_quick_exits_zero() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.reach", "--quick", "--database", "sqlite"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "index p95" in run.stdout

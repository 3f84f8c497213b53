"""Issue 19, item 1: the live reach preview over millions of subscribers, from the in-memory index
and from SQL, on SQLite or PostgreSQL.

    python -m bench.reach [--subscribers N | --quick] [--database sqlite|postgresql] [--database-url URL]

Seeds N sample subscribers (bulk, bench/common.py), then varies them in SQL: a third also on SMS, a
fifth on WeChat, some paused, two thirds supplied by three departments. In a fresh process: builds
the index (time and RSS printed), then counts 20 different three-clause rules through the index
(`LiveReach.counts`, its catch-up on the change log included) and through the SQL preview, checks
every count equal and prints p50/p95 of both. Exits 1 on any difference or an index p95 of 200 ms
or more.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import DEFAULT_PG_URL, bench_database, catalogue, cpu_count, isolated, seed, sqlite_url
from pushsvc.core.catalogue import Catalogue
from pushsvc.core.targeting import Targeting, parse_targeting
from pushsvc.dev.demo_data import HOME_DOMAIN, SampleFactory
from pushsvc.reach.live import LiveReach
from pushsvc.store.reach_index import counted_by_sql

TARGET_P95_MS = 200.0
RULES = 20
QUICK = 20_000
CHANNELS = ("email", "sms", "wechat")
DEPARTMENTS = (1, 2, 3)


# Random rules over the catalogue, with values the sample data holds (shared with tests/test_reach.py).

def values_seen(factory: SampleFactory, n: int) -> dict[tuple[str, str], list[Any]]:
    seen: dict[tuple[str, str], list[Any]] = {}
    for i in range(1, n + 1):
        for group, attrs in factory.make(i).audiences.items():
            for name, value in attrs.items():
                seen.setdefault((group, name), []).append(value)
    return seen


def random_value(rng: random.Random, attribute: Any, seen: list[Any]) -> Any:
    if attribute.choices is not None:
        return rng.choice(attribute.choices).value
    if seen and rng.random() < 0.8:
        return rng.choice(seen)
    if attribute.type == "boolean":
        return rng.random() < 0.5
    lo, hi = attribute.min or 0, attribute.max if attribute.max is not None else 600
    if attribute.type == "integer":
        return rng.randint(int(lo), int(hi))
    if attribute.type == "number":
        return round(rng.uniform(lo, hi), 1)
    if attribute.type == "date":
        return f"20{rng.randint(15, 27)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    return "91350100M000100Y43"  # a valid credit code nobody in the sample holds


def random_clause(rng: random.Random, cat: Catalogue, groups: list[str],
                  seen: dict[tuple[str, str], list[Any]]) -> dict[str, Any]:
    group = rng.choice(groups) if rng.random() < 0.8 else rng.choice(list(cat.groups))
    attribute = rng.choice(list(cat.groups[group].attributes.values()))
    ordered = attribute.type in ("integer", "number", "date")
    op = rng.choice(["eq", "in", "not_in", "exists"] + (["gte", "lte"] * 2 if ordered else []))
    values = seen.get((group, attribute.name), [])
    clause: dict[str, Any] = {"attr": f"{group}.{attribute.name}", "op": op}
    if op == "exists":
        clause["value"] = rng.random() < 0.6
    elif op in ("in", "not_in"):
        picked = [random_value(rng, attribute, values) for _ in range(rng.randint(1, 4))]
        clause["value"] = list({repr(v): v for v in picked}.values())
    else:
        clause["value"] = random_value(rng, attribute, values)
    return clause


def random_predicate(rng: random.Random, cat: Catalogue, groups: list[str],
                     seen: dict[tuple[str, str], list[Any]], depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth >= 2 or roll < 0.4:
        return random_clause(rng, cat, groups, seen)
    if roll < 0.55:
        return {"not": random_predicate(rng, cat, groups, seen, depth + 1)}
    items = [random_predicate(rng, cat, groups, seen, depth + 1) for _ in range(rng.randint(2, 3))]
    return {"all" if roll < 0.8 else "any": items}


def three_clauses(rng: random.Random, cat: Catalogue, groups: list[str],
                  seen: dict[tuple[str, str], list[Any]]) -> dict[str, Any]:
    a, b, c = (random_clause(rng, cat, groups, seen) for _ in range(3))
    return rng.choice([
        {"all": [a, b, c]}, {"any": [a, b, c]}, {"all": [a, {"any": [b, c]}]},
        {"all": [a, {"not": b}, c]}, {"any": [{"all": [a, b]}, c]},
    ])


def parsed(raw: dict[str, Any], cat: Catalogue) -> Targeting:
    targeting, errors = parse_targeting(raw, cat)
    assert targeting is not None, (raw, errors)
    return targeting


Rule = tuple[Targeting, str, list[str], int | None]


def bench_rules(cat: Catalogue, count: int = RULES) -> list[Rule]:
    """`count` different three-clause rules over one to three groups, on one to three channels,
    asked by a department (so the "own" counts are computed too)."""
    rng = random.Random(19)
    seen = values_seen(SampleFactory(cat, seed=2026), 2000)
    rules = []
    for _ in range(count):
        groups = rng.sample(list(cat.groups), rng.randint(1, 3))
        targeting = parsed({"audiences": groups, "where": three_clauses(rng, cat, groups, seen)}, cat)
        domain = HOME_DOMAIN if rng.random() < 0.7 else rng.choice(list(cat.domains))
        rules.append((targeting, domain, rng.sample(CHANNELS, rng.randint(1, 3)), rng.choice(DEPARTMENTS)))
    return rules


# The data and the measurement.

def vary(url: str) -> float:
    """Channels, statuses and suppliers mixed in SQL after the bulk seed (which is all e-mail,
    active and the admin's); statistics refreshed after."""

    async def run() -> float:
        started = time.perf_counter()
        db = bench_database(url)
        now = "CURRENT_TIMESTAMP"
        statements = [
            *(f"INSERT INTO departments (id, name, domains, api_key_hash, key_prefix, created_at) "
              f"VALUES ({d}, 'bench {d}', '[]', 'bench-{d}', 'b{d}', {now})" for d in DEPARTMENTS),
            "INSERT INTO subscriber_channels (subscriber_id, channel) SELECT id, 'sms' FROM subscribers WHERE id % 3 = 0",
            "INSERT INTO subscriber_channels (subscriber_id, channel) SELECT id, 'wechat' FROM subscribers WHERE id % 5 = 0",
            "DELETE FROM subscriber_channels WHERE channel = 'email' AND subscriber_id % 7 = 0",
            "UPDATE subscribers SET status = 'paused' WHERE id % 23 = 0",
            "UPDATE subscribers SET department_id = 1 + id % 3, supplied_by = 'department' WHERE id % 3 <> 0",
        ]
        async with db.write() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("ANALYZE"))
        await db.close()
        return time.perf_counter() - started

    return asyncio.run(run())


def rss_mb() -> float:
    """This process's resident set size now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


@dataclass
class Measured:
    build_seconds: float
    rss_before_mb: float
    rss_after_mb: float
    bitmaps: int
    bitmap_mb: float
    index_ms: list[float]
    sql_ms: list[float]
    misses: list[str]
    reached: list[int]


def measure(url: str) -> Measured:
    async def run() -> Measured:
        cat = catalogue()
        rules = bench_rules(cat)
        db = bench_database(url)
        live = LiveReach(db, cat)
        before = rss_mb()
        started = time.perf_counter()
        await live.build()
        build = time.perf_counter() - started
        after = rss_mb()
        assert live.index is not None
        sizes = live.index.sizes()
        index_ms, sql_ms, misses, reached = [], [], [], []
        await live.counts(*rules[0])  # one warm-up (first use of the connection pool), not measured
        for rule in rules:
            t0 = time.perf_counter()
            from_index = await live.counts(*rule)
            index_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            async with db.read() as conn:
                from_sql = await counted_by_sql(conn, *rule)
            sql_ms.append((time.perf_counter() - t0) * 1000)
            reached.append(from_sql.total[0])
            if from_index != from_sql:
                misses.append(f"{rule}: index {from_index} != sql {from_sql}")
        await db.close()
        return Measured(build, before, after, sizes["bitmaps"], sizes["bytes"] / 2**20, index_ms, sql_ms, misses,
                        reached)

    return asyncio.run(run())


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: of 20 values, p95 is the 19th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reach", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=3_000_000, help="how many to seed (default 3,000,000)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} subscribers (the test's run)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", help=f"for postgresql (default {DEFAULT_PG_URL}, schema pushsvc_bench)")
    args = parser.parse_args(argv)
    n = QUICK if args.quick else args.subscribers
    console = Console(width=None if sys.stdout.isatty() else 150)
    workdir = Path(tempfile.mkdtemp(prefix="pushsvc-bench-"))
    try:
        url = sqlite_url(workdir, "reach.db") if args.database == "sqlite" else args.database_url or DEFAULT_PG_URL
        console.print(f"[bold]{args.database}[/]: seeding {n:,} subscribers ...")
        seeded = isolated(seed, url, n)
        varied = isolated(vary, url)
        console.print(f"  seeded {seeded.rows:,} rows in {seeded.seconds:.1f} s, varied in {varied:.1f} s")
        m = isolated(measure, url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"reach preview over {n:,} subscribers, {RULES} three-clause rules, {cpu_count()} CPU(s)")
    for column in ("backend", "index build", "index RSS", "bitmaps", "index p50", "index p95", "SQL p50", "SQL p95",
                   "SQL/index p95", "equal", f"p95 < {TARGET_P95_MS:.0f} ms"):
        table.add_column(column, justify="right")
    i95, s95 = percentile(m.index_ms, 0.95), percentile(m.sql_ms, 0.95)
    met = not m.misses and i95 < TARGET_P95_MS
    table.add_row(args.database, f"{m.build_seconds:.1f} s", f"{m.rss_after_mb - m.rss_before_mb:.0f} MB",
                  f"{m.bitmaps:,} ({m.bitmap_mb:.0f} MB)", f"{percentile(m.index_ms, 0.5):.1f} ms", f"{i95:.1f} ms",
                  f"{percentile(m.sql_ms, 0.5):.0f} ms", f"{s95:.0f} ms", f"{s95 / i95:.0f}x",
                  f"{RULES - len(m.misses)}/{RULES}", "[green]met[/]" if met else "[red]missed[/]")
    console.print(table)
    console.print(f"index p95 {i95:.1f} ms, SQL p95 {s95:.0f} ms; reached per rule: {sorted(m.reached)}")
    for miss in m.misses:
        console.print(f"[red]count differs[/]: {miss}", markup=True, highlight=False)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

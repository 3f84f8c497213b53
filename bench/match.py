"""Issues 2 and 19 (item 2): matching a million subscribers, streamed, on SQLite and PostgreSQL.

    python -m bench.match [--subscribers N] [--database-url URL ...] [--explain]

For each database: seed N sample subscribers (bulk, not through the API), then time the fan-out's
own query (`matching_pairs` read with `Database.stream`, the way `run_fanout` reads it) for a
three-clause rule that selects about a third of them, the floor beside it (every subscriber's id,
`SELECT id FROM subscribers`, streamed the same way: no matching at all), and a naive matcher that
loads every subscriber into Python and filters with `targeting.evaluate`. Each step runs in a fresh
process so that its peak RSS is its own. Targets: streamed under 1 s, first row under 0.3 s, under
300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import DEFAULT_PG_URL, bench_database, catalogue, cpu_count, isolated, peak_rss_mb, seed, sqlite_url
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import Targeting, evaluate, parse_targeting
from pushsvc.dev.demo_data import HOME_DOMAIN
from pushsvc.store.matching import matching_pairs
from pushsvc.store.schema import (
    subscriber_attributes,
    subscriber_audiences,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)

TARGET_SECONDS = 1.0
TARGET_FIRST_ROW_SECONDS = 0.3
TARGET_RSS_MB = 300.0
YIELD_PER = 5000
CHANNELS = ["email"]
# Three clauses over three groups; with the sample data's group mix and domain subscriptions this
# reaches about 30% of all subscribers.
RULE: dict[str, Any] = {
    "audiences": ["enterprise", "market_entity", "taxpayer"],
    "where": {"any": [
        {"attr": "enterprise.scale", "op": "in", "value": ["small", "micro"]},
        {"attr": "market_entity.entity_type", "op": "in", "value": ["individual_business", "partnership"]},
        {"attr": "taxpayer.taxpayer_type", "op": "eq", "value": "small_scale"},
    ]},
}  # fmt: skip


@dataclass
class Measured:
    seconds: float
    subscribers: int
    pairs: int
    peak_rss_mb: float
    first_row_seconds: float = 0.0


def _targeting() -> Targeting:
    targeting, errors = parse_targeting(RULE, catalogue())
    assert targeting is not None, errors
    return targeting


def _query() -> sa.Select[Any]:
    return matching_pairs(_targeting(), HOME_DOMAIN, CHANNELS)


def met(m: Measured) -> bool:
    return (m.seconds < TARGET_SECONDS and m.first_row_seconds < TARGET_FIRST_ROW_SECONDS
            and m.peak_rss_mb < TARGET_RSS_MB)


def measure_floor(url: str) -> Measured:
    """Every subscriber's id streamed as the fan-out's rows are: what reading alone costs."""
    return measure_streamed(url, floor=True)


def measure_streamed(url: str, floor: bool = False) -> Measured:
    """The fan-out's read (`Database.stream`, as run_fanout reads it): one pass, rows in
    subscriber order, never the whole result in memory."""

    async def run() -> Measured:
        db = bench_database(url)
        # Built before the clock starts, as a fan-out job has it ready too.
        query = (sa.select(subscribers.c.id, sa.literal_column("'email'"), sa.literal_column("'immediate'"))
                 .order_by(subscribers.c.id)) if floor else _query()
        started = time.perf_counter()
        first = 0.0
        pairs = subscribers_seen = 0
        last = None
        async for partition in db.stream(query, YIELD_PER):
            if not pairs:
                first = time.perf_counter() - started
            for sid, _channel, _frequency in partition:
                pairs += 1
                if sid != last:
                    subscribers_seen += 1
                    last = sid
        seconds = time.perf_counter() - started
        await db.close()
        return Measured(seconds, subscribers_seen, pairs, peak_rss_mb(), first)

    return asyncio.run(run())


def measure_naive(url: str) -> Measured:
    """Everyone loaded into Python with their groups, domains and channels, then filtered one by one."""

    async def run() -> Measured:
        db = bench_database(url)
        targeting = _targeting()
        started = time.perf_counter()
        people: dict[int, dict[str, Any]] = {}
        async with db.read() as conn:
            for sid, status in await conn.execute(sa.select(subscribers.c.id, subscribers.c.status)):
                people[sid] = {"status": status, "audiences": {}, "domains": set(), "channels": set()}
            A = subscriber_audiences.c
            for sid, audience in await conn.execute(sa.select(A.subscriber_id, A.audience)):
                people[sid]["audiences"][audience] = {}
            V = subscriber_attributes.c
            for sid, audience, name, value in await conn.execute(sa.select(V.subscriber_id, V.audience, V.name, V.value)):
                people[sid]["audiences"][audience][name] = json.loads(value)
            for sid, domain in await conn.execute(sa.select(subscriber_domains.c.subscriber_id, subscriber_domains.c.domain)):
                people[sid]["domains"].add(domain)
            for sid, channel in await conn.execute(sa.select(subscriber_channels.c.subscriber_id, subscriber_channels.c.channel)):
                people[sid]["channels"].add(channel)
        matched = pairs = 0
        for sid in sorted(people):
            p = people[sid]
            if p["status"] != "active" or not any(g in p["audiences"] for g in targeting.audiences):
                continue
            if HOME_DOMAIN not in p["domains"] and ALL_DOMAINS not in p["domains"]:
                continue
            if targeting.where is not None and not evaluate(targeting.where, p["audiences"])[0]:
                continue
            reached = [c for c in CHANNELS if c in p["channels"]]
            matched += bool(reached)
            pairs += len(reached)
        seconds = time.perf_counter() - started
        await db.close()
        return Measured(seconds, matched, pairs, peak_rss_mb())

    return asyncio.run(run())


def query_plan(url: str) -> str:
    """EXPLAIN QUERY PLAN (SQLite) or EXPLAIN ANALYZE (PostgreSQL) of the streamed query."""

    async def run() -> str:
        db = bench_database(url)
        async with db.read() as conn:
            sql = str(_query().compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))  # type: ignore[arg-type]
            if db.is_sqlite:
                rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
                plan = "\n".join(f"{r[0]:>3} {r[1]:>3} {r[3]}" for r in rows)
            else:
                rows = (await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")).all()
                plan = "\n".join(r[0] for r in rows)
        await db.close()
        return f"{sql}\n\n{plan}"

    return asyncio.run(run())


@dataclass
class Report:
    backend: str
    seed_seconds: float
    seed_rows: int
    streamed: Measured
    floor: Measured
    naive: Measured | None
    plan: str | None


def bench_one(url: str, n: int, naive: bool, explain: bool, console: Console) -> Report:
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    console.print(f"[bold]{backend}[/]: seeding {n:,} subscribers ...")
    seeded = isolated(seed, url, n)
    console.print(f"  seeded {seeded.rows:,} rows in {seeded.seconds:.1f} s ({seeded.rows / seeded.seconds:,.0f} rows/s)")
    streamed = isolated(measure_streamed, url)
    console.print(f"  streamed match: {streamed.subscribers:,} subscribers in {streamed.seconds:.2f} s")
    floor = isolated(measure_floor, url)
    console.print(f"  floor: {floor.subscribers:,} ids streamed in {floor.seconds:.2f} s")
    slow = not met(streamed)
    plan = isolated(query_plan, url) if explain or slow else None
    result = None
    if naive:
        console.print("  naive match ...")
        result = isolated(measure_naive, url)
    return Report(backend, seeded.seconds, seeded.rows, streamed, floor, result, plan)


def print_reports(console: Console, n: int, reports: list[Report]) -> None:
    table = Table(title=f"matching {n:,} subscribers, rule of 3 clauses, {cpu_count()} CPU(s)")
    for column in ("backend", "seed", "matched", "streamed", "first row", "peak RSS", "floor: all ids",
                   "naive", "naive RSS", "naive/streamed", "<1 s, first <0.3 s, <300 MB"):
        table.add_column(column, justify="right")
    for r in reports:
        s, nv = r.streamed, r.naive
        table.add_row(
            r.backend,
            f"{r.seed_seconds:.1f} s",
            f"{s.subscribers:,} ({s.subscribers / n:.0%})",
            f"{s.seconds:.2f} s",
            f"{s.first_row_seconds:.2f} s",
            f"{s.peak_rss_mb:.0f} MB",
            f"{r.floor.subscribers:,} in {r.floor.seconds:.2f} s (first {r.floor.first_row_seconds:.2f} s)",
            f"{nv.seconds:.2f} s" if nv else "-",
            f"{nv.peak_rss_mb:.0f} MB" if nv else "-",
            f"{nv.seconds / s.seconds:.1f}x" if nv else "-",
            "[green]met[/]" if met(s) else "[red]missed[/]",
        )
    console.print(table)
    for r in reports:
        if r.naive and (r.naive.subscribers, r.naive.pairs) != (r.streamed.subscribers, r.streamed.pairs):
            console.print(f"[red]{r.backend}: naive and streamed disagree[/]: {asdict(r.naive)} vs {asdict(r.streamed)}")
        if r.plan:
            console.print(f"\n[bold]{r.backend} query and plan[/]")
            console.print(r.plan, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.match", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000, help="how many to seed (default 1,000,000)")
    parser.add_argument("--database-url", action="append", dest="urls", metavar="URL",
                        help="repeatable; default: a temporary SQLite file and " + DEFAULT_PG_URL +
                        " (in schema pushsvc_bench, dropped and recreated)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive matcher")
    parser.add_argument("--explain", action="store_true", help="print the query plan even when fast enough")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)  # a table, not a squeezed one, in logs
    workdir = Path(tempfile.mkdtemp(prefix="pushsvc-bench-"))
    try:
        urls = args.urls or [sqlite_url(workdir, "match.db"), DEFAULT_PG_URL]
        reports = [bench_one(url, args.subscribers, not args.no_naive, args.explain, console) for url in urls]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_reports(console, args.subscribers, reports)
    return 0 if all(met(r.streamed) for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

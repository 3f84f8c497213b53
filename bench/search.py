"""Issue 18: the public index searched over 100,000 policies, on SQLite and PostgreSQL.

    python -m bench.search --database sqlite|postgresql [--policies N] [--quick] [--database-url URL]

Seeds N policies straight into the tables (bulk, not through the API; titles, summaries and doc
numbers made from the city's policy vocabulary, states and targeting mixed as in real life, a few
sent with a test key), with their index rows as the service writes them (pushsvc.store.search).
Then 20 searches (one- and two-character Chinese words, longer words, a doc number, with and
without filters), each the whole database work of a /policies page (pushsvc.policies.search.find:
the page, the count, the rows shown, the department choices), beside a naive `LIKE '%…%'` scan of
the policies table for the same words and filters. Target: every search's p95 under 100 ms; exits
1 on a miss (`--quick`, run by the tests: its p50).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import DEFAULT_PG_URL, bench_database, catalogue, fresh_database, sqlite_url
from pushsvc.core.search_terms import LISTED_STATUSES, indexed
from pushsvc.dev.demo_data import DISTRICT_WEIGHTS, INDUSTRY_WORDS
from pushsvc.policies.search import Search, find
from pushsvc.services import Services
from pushsvc.store.db import Database
from pushsvc.store.schema import departments, policies, policy_search
from pushsvc.store.search import search_row

TARGET_MS = 100.0
RUNS, LIKE_RUNS = 7, 3
CHUNK = 5_000
SEED = 2026
# Departments as the city names them, with the prefix of their doc numbers.
DEPARTMENTS = (
    ("广州市人力资源和社会保障局", "穗人社"), ("国家税务总局广州市税务局", "穗税"), ("广州市医疗保障局", "穗医保"),
    ("广州市住房和城乡建设局", "穗建"), ("广州市民政局", "穗民"), ("广州市科学技术局", "穗科"),
    ("广州市工业和信息化局", "穗工信"), ("广州市商务局", "穗商务"), ("广州市农业农村局", "穗农"),
    ("广州市教育局", "穗教"), ("广州市卫生健康委员会", "穗卫健"), ("广州市生态环境局", "穗环"),
    ("广州市规划和自然资源局", "穗规划资源"), ("广州市财政局", "穗财"), ("广州市应急管理局", "穗应急"),
    ("广州市市场监督管理局", "穗市监"), ("广州市司法局", "穗司"), ("广州市文化广电旅游局", "穗文广旅"),
)  # fmt: skip
ACTIONS = ("支持", "促进", "加快", "进一步做好", "规范", "调整", "加强", "优化", "实施", "做好", "推进", "完善")
SUBJECTS = (
    "中小微企业", "高校毕业生", "个体工商户", "农民工", "退役军人", "科技型企业", "外贸企业", "困难群众",
    "城乡居民", "灵活就业人员", "小规模纳税人", "专精特新企业", "新型研发机构", "养老机构", "港澳青年",
    "制造业企业", "家政服务企业", "残疾人",
)  # fmt: skip
TOPICS = (
    "稳岗扩岗", "社保缴费", "医保报销", "就业创业", "创业担保贷款", "技能培训", "住房公积金", "租赁住房",
    "增值税减免", "所得税优惠", "研发费用加计扣除", "人才引进", "融资担保", "贷款贴息", "最低生活保障",
    "临时救助", "养老服务补贴", "义务教育入学", "垃圾分类", "安全生产", "消费券发放", "首台套保险补偿",
    "知识产权质押融资", "高新技术企业认定", "农机购置补贴", "城中村改造", "危房改造", "环境影响评价",
)  # fmt: skip
KINDS = ("若干措施", "实施细则", "通知", "办法", "实施意见", "工作方案", "管理办法", "补充通知")
CLAUSES = (
    "对符合条件的{s}给予{t}支持", "按规定享受{t}政策", "{s}可通过广东政务服务网申请{t}",
    "实行免申即享，无需提交材料", "补贴资金按季度发放", "申请期限至{y}年12月31日", "由各区统一受理、审核",
    "对{s}按每人{n}元标准给予一次性补贴", "政策执行期间如遇国家和省新规定，从其规定",
)  # fmt: skip
SORTS = ("规字", "发", "函", "办规")


def _title(rng: random.Random) -> tuple[str, str]:
    subject, topic = rng.choice(SUBJECTS), rng.choice(TOPICS)
    district = rng.choice(["", "", "", "海珠区", "天河区", "南沙区", "黄埔区", "番禺区"])
    title = f"关于{rng.choice(ACTIONS)}{district}{subject}{topic}的{rng.choice(KINDS)}"
    return title, subject


def _summary(rng: random.Random, subject: str, year: int) -> str:
    topic = rng.choice(TOPICS)
    clauses = [rng.choice(CLAUSES).format(s=subject, t=topic, y=year, n=rng.choice((300, 500, 1000, 2000)))
               for _ in range(rng.randint(2, 4))]
    industry = rng.choice(list(INDUSTRY_WORDS.values()))
    return "；".join(clauses) + f"。适用于{industry}等行业。"


def _targeting(rng: random.Random, groups: list[str], districts: list[str]) -> dict[str, Any]:
    audiences = rng.sample(groups, rng.choice((1, 1, 2, 3)))
    if rng.random() < 0.5:
        return {"audiences": audiences}
    chosen = rng.sample(districts, rng.choice((1, 1, 2, 3)))
    clauses = [{"attr": f"{g}.district", "op": "in", "value": chosen} for g in audiences]
    return {"audiences": audiences, "where": clauses[0] if len(clauses) == 1 else {"any": clauses}}


def _status(rng: random.Random) -> tuple[str, int]:
    roll = rng.random()
    if roll < 0.05:
        return "repealed", 1
    if roll < 0.08:
        return "lapsed", 1
    return "published", 2 if roll < 0.15 else 1


def policy_rows(n: int, first_id: int = 1) -> list[dict[str, Any]]:
    """`n` policies as stored, newest last, over the last five years; ids from `first_id`."""
    rng = random.Random(SEED)
    cat = catalogue()
    groups, districts, domains = list(cat.groups), list(DISTRICT_WEIGHTS), list(cat.domains)
    start = datetime(2021, 12, 1, tzinfo=timezone.utc)
    step = timedelta(days=5 * 365) / n
    rows = []
    for i in range(n):
        dept = rng.randrange(len(DEPARTMENTS))
        created = start + step * i
        title, subject = _title(rng)
        status, revision = _status(rng)
        rows.append({
            "id": first_id + i, "department_id": dept + 1, "title": title,
            "summary": _summary(rng, subject, created.year), "body": "", "domain": rng.choice(domains),
            "doc_number": f"{DEPARTMENTS[dept][1]}{rng.choice(SORTS)}〔{created.year}〕{rng.randint(1, 60)}号",
            "disclosure": "proactive", "targeting": _targeting(rng, groups, districts), "channels": ["email"],
            "status": status, "revision": revision, "created_at": created, "updated_at": created,
            "published_at": created, "publish_at": None, "test": rng.random() < 0.02,
            "repealed_on": created.date() + timedelta(days=200) if status == "repealed" else None,
        })
    return rows


async def seed(url: str, n: int) -> None:
    """Departments, `n` policies and their index rows in a fresh (migrated) database."""
    db = bench_database(url)
    districts = list(catalogue().districts)
    now = datetime.now(timezone.utc)
    try:
        async with db.write() as conn:
            await conn.execute(sa.insert(departments), [
                {"id": i + 1, "name": name, "domains": ["*"], "api_key_hash": f"{i:064d}", "key_prefix": "psk_bench",
                 "created_at": now} for i, (name, _) in enumerate(DEPARTMENTS)])
        rows = policy_rows(n)
        for at in range(0, n, CHUNK):
            chunk = rows[at:at + CHUNK]
            async with db.write() as conn:
                await conn.execute(sa.insert(policies), chunk)
                index = [search_row(conn.dialect.name, p, districts, p["updated_at"]) for p in chunk if indexed(p)]
                await conn.execute(sa.insert(policy_search), index)
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("ANALYZE" if db.is_sqlite else "VACUUM ANALYZE"))
    finally:
        await db.close()


# (label, search): the words and filters a person might try.
SEARCHES: tuple[tuple[str, Search], ...] = (
    ("two characters: 稳岗", Search(words="稳岗")),
    ("two characters: 社保", Search(words="社保")),
    ("two characters: 医保", Search(words="医保")),
    ("one character: 企", Search(words="企")),
    ("one character: 补", Search(words="补")),
    ("a longer word: 高校毕业生", Search(words="高校毕业生")),
    ("a longer word: 研发费用加计扣除", Search(words="研发费用加计扣除")),
    ("two words: 养老服务 补贴", Search(words="养老服务 补贴")),
    ("a doc number: 穗人社规字〔2024〕15号", Search(words="穗人社规字〔2024〕15号")),
    ("digits: 2023", Search(words="2023")),
    ("首台套, page 2", Search(words="首台套", page=2)),
    ("公积金 + domain", Search(words="公积金", domain="affordable-housing")),
    ("补贴 + district", Search(words="补贴", district="haizhu")),
    ("创业 + audience + in force", Search(words="创业", audience="tech_talent", status="in_force")),
    ("人才引进 + department", Search(words="人才引进", department=6)),
    ("稳岗 + revised", Search(words="稳岗", status="revised")),
    ("domain only", Search(domain="healthcare")),
    ("repealed only", Search(status="repealed")),
    ("department + district", Search(department=5, district="nansha")),
    ("no words, page 50", Search(page=50)),
)


@dataclass
class _Svc:
    """What find() uses of Services."""

    db: Database


def _like(dialect: str, wanted: Search) -> sa.Select[Any]:
    """The naive search: every word (split by spaces) somewhere in the title, summary or doc number."""
    P = policies.c
    query = sa.select(P.id).where(P.status.in_(LISTED_STATUSES), P.test.is_(False), P.disclosure == "proactive")
    for word in wanted.words.split():
        query = query.where(sa.or_(P.title.contains(word, autoescape=True), P.summary.contains(word, autoescape=True),
                                   P.doc_number.contains(word, autoescape=True)))
    if wanted.domain:
        query = query.where(P.domain == wanted.domain)
    if wanted.department:
        query = query.where(P.department_id == wanted.department)
    json_text = sa.cast(P.targeting, sa.Text)
    if wanted.audience:
        query = query.where(json_text.contains(f'"{wanted.audience}"'))
    if wanted.district:
        query = query.where(json_text.contains(f'"{wanted.district}"'))
    return query.order_by(P.created_at.desc())


async def _time(run: Any, times: int) -> list[float]:
    out = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


async def measure(url: str, quick: bool) -> list[dict[str, Any]]:
    db = bench_database(url)
    svc = cast(Services, _Svc(db))
    results = []
    try:
        for label, wanted in SEARCHES:
            found = await find(svc, wanted)  # warm: the first run reads pages from disk
            times = await _time(lambda w=wanted: find(svc, w), RUNS)
            like = _like(db.engine.dialect.name, wanted)
            offset = (wanted.page - 1) * 20

            async def naive(q: sa.Select[Any] = like, o: int = offset) -> None:
                async with db.read() as conn:
                    await conn.execute(q.offset(o).limit(20))
                    await conn.execute(sa.select(sa.func.count()).select_from(q.order_by(None).subquery()))

            like_times = await _time(naive, 1 if quick else LIKE_RUNS)
            results.append({"label": label, "found": f"{'>' if found.more else ''}{min(found.total, 1000)}",
                            "p50": statistics.median(times), "p95": _p95(times), "like": statistics.median(like_times)})
    finally:
        await db.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", help=f"PostgreSQL URL (default {DEFAULT_PG_URL}; benches use their own schema)")
    parser.add_argument("--policies", type=int, default=100_000, help="how many to seed (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="5,000 policies, one naive run: for the tests")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.policies
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        url = sqlite_url(Path(tmp), "search.db") if args.database == "sqlite" else args.database_url or DEFAULT_PG_URL
        started = time.perf_counter()
        fresh_database(url)
        asyncio.run(seed(url, n))
        seconds = time.perf_counter() - started
        console.print(f"{args.database}: {n:,} policies seeded with their index in {seconds:.1f} s")
        rows = asyncio.run(measure(url, args.quick))
    table = Table(title=f"/policies over {n:,} policies on {args.database}: ms per page (target p95 < {TARGET_MS:.0f})")
    for column in ("search", "found", "index p50", "index p95", "LIKE scan"):
        table.add_column(column, justify="left" if column == "search" else "right")
    for r in rows:
        miss = r["p95"] >= TARGET_MS
        table.add_row(r["label"], r["found"], f"{r['p50']:.1f}", f"[red]{r['p95']:.1f}[/red]" if miss else f"{r['p95']:.1f}",
                      f"{r['like']:.1f}")
    console.print(table)
    every = [r["p95"] for r in rows]
    console.print(f"slowest p95 {max(every):.1f} ms; median of p50s {statistics.median(r['p50'] for r in rows):.1f} ms; "
                  f"naive LIKE median {statistics.median(r['like'] for r in rows):.1f} ms")
    # A quick run (the tests', on a machine other tests load too) is judged on medians: one stall
    # among its seven runs is the machine, not the index.
    judged = "p50" if args.quick else "p95"
    misses = [r["label"] for r in rows if r[judged] >= TARGET_MS]
    if misses:
        console.print(f"[red]MISS[/red]: {', '.join(misses)}")
        return 1
    console.print("all searches within target")
    return 0


if __name__ == "__main__":
    sys.exit(main())

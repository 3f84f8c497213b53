"""What the benches share: fresh databases, bulk seeding of sample subscribers, isolated runs.

Seeding bypasses the API and the import code on purpose: it writes the four subscriber tables
directly (Core executemany in big chunks on SQLite, asyncpg COPY on PostgreSQL), which is the
fastest way to have a million rows to match against. Consent rows are not written: nothing the
benches measure reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.catalogue import Catalogue, load_catalogue
from pushsvc.dev.demo_data import SampleFactory, SampleSubscriber
from pushsvc.settings import REPO_ROOT
from pushsvc.store.db import Database
from pushsvc.store.migrate import upgrade
from pushsvc.store.schema import (
    subscriber_attributes,
    subscriber_audiences,
    subscriber_channels,
    subscriber_domains,
    subscribers,
)
from pushsvc.store.subscribers import attribute_row

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# PostgreSQL benches live in their own schema so they never touch the tables tests use.
BENCH_SCHEMA = "pushsvc_bench"
CHUNK = 25_000  # subscribers per transaction: big enough to amortise, small enough for memory


def catalogue() -> Catalogue:
    return load_catalogue(REPO_ROOT / "audiences")


def _search_path(dialect: Dialect, _rec: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    if dialect.name == "postgresql":
        cparams.setdefault("server_settings", {})["search_path"] = BENCH_SCHEMA


def use_bench_schema() -> None:
    """Every PostgreSQL connection this process opens from now on (ours, Alembic's) uses BENCH_SCHEMA."""
    if not sa.event.contains(Engine, "do_connect", _search_path):
        sa.event.listen(Engine, "do_connect", _search_path)


def bench_database(url: str) -> Database:
    if not url.startswith("sqlite"):
        use_bench_schema()
    return Database(url)


def fresh_database(url: str) -> None:
    """An empty, migrated database: the SQLite file deleted first, or the bench schema recreated."""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        async def recreate() -> None:
            db = bench_database(url)
            async with db.write() as conn:
                await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE"))
                await conn.execute(sa.text(f"CREATE SCHEMA {BENCH_SCHEMA}"))
            await db.close()

        asyncio.run(recreate())
    upgrade(url)


@dataclass
class Rows:
    """One chunk of subscribers as rows of the five tables, in column order."""

    subscribers: list[tuple[Any, ...]]
    audiences: list[tuple[Any, ...]]
    attributes: list[tuple[Any, ...]]
    domains: list[tuple[Any, ...]]
    channels: list[tuple[Any, ...]]

    def tables(self) -> tuple[list[tuple[Any, ...]], ...]:
        return (self.subscribers, self.audiences, self.attributes, self.domains, self.channels)

    def count(self) -> int:
        return sum(len(t) for t in self.tables())


SUBSCRIBER_COLUMNS = ("id", "name", "email", "uscc", "status", "frequency", "locale", "created_at", "updated_at")
TABLES = (
    (subscribers, SUBSCRIBER_COLUMNS),
    (subscriber_audiences, ("subscriber_id", "audience")),
    (subscriber_attributes, ("subscriber_id", "audience", "name", "value", "num")),
    (subscriber_domains, ("subscriber_id", "domain")),
    (subscriber_channels, ("subscriber_id", "channel")),
)


def chunk_rows(subs: list[tuple[int, SampleSubscriber]], at: datetime | str) -> Rows:
    """Ids are given, not generated, so child rows need no round trip; `at` is UTC as the backend stores it."""
    rows = Rows([], [], [], [], [])
    for sid, sub in subs:
        codes = [a["uscc"] for a in sub.audiences.values() if "uscc" in a]
        rows.subscribers.append(
            (sid, sub.name, sub.email, codes[0] if codes else None, "active", sub.frequency, sub.locale, at, at)
        )
        rows.audiences.extend((sid, slug) for slug in sub.audiences)
        rows.attributes.extend(
            tuple(attribute_row(sid, slug, name, value).values())
            for slug, attrs in sub.audiences.items()
            for name, value in attrs.items()
        )
        rows.domains.extend((sid, d) for d in sub.domains)
        rows.channels.extend((sid, c) for c in sub.channels)
    return rows


def chunks(factory: SampleFactory, first: int, last: int, size: int = CHUNK) -> Iterator[list[tuple[int, SampleSubscriber]]]:
    for start in range(first, last + 1, size):
        yield [(i, factory.make(i)) for i in range(start, min(last, start + size - 1) + 1)]


async def _write_sqlite(conn: AsyncConnection, rows: Rows) -> None:
    # Plain executemany of tuples: SQLAlchemy's per-row processing would cost more than SQLite's insert.
    for (table, columns), data in zip(TABLES, rows.tables()):
        marks = ", ".join("?" for _ in columns)
        await conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", data)


async def _write_postgres(conn: AsyncConnection, rows: Rows) -> None:
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    # A bulk load of rows generated consistent: skip the per-row foreign-key triggers, as pg_restore does.
    await raw.execute("SET LOCAL session_replication_role = replica")
    for (table, columns), data in zip(TABLES, rows.tables()):
        await raw.copy_records_to_table(table.name, records=data, columns=list(columns), schema_name=BENCH_SCHEMA)


@dataclass
class SeedResult:
    subscribers: int
    rows: int
    seconds: float


PARTS = 2  # the data is made in this many parts, each from its own random seed, on any backend


def _load_part(url: str, part: int, n: int, domains: tuple[str, ...] | None, naive_utc: datetime) -> int:
    """Generate and write ids of one part (module level: PostgreSQL loads the parts in parallel)."""
    first, last = part * n // PARTS + 1, (part + 1) * n // PARTS
    factory = SampleFactory(catalogue(), seed=2026 + part, domains=domains)

    async def run() -> int:
        db = bench_database(url)
        write = _write_sqlite if db.is_sqlite else _write_postgres
        # The raw driver gets the stored form: SQLAlchemy's text format on SQLite, a timestamp on PostgreSQL.
        at: datetime | str = naive_utc.isoformat(" ", "microseconds") if db.is_sqlite else naive_utc
        total = 0
        try:
            for subs in chunks(factory, first, last):
                rows = chunk_rows(subs, at)
                async with db.write() as conn:
                    await write(conn, rows)
                total += rows.count()
        finally:
            await db.close()
        return total

    return asyncio.run(run())


def seed(url: str, n: int, domains: tuple[str, ...] | None = None) -> SeedResult:
    """A fresh database holding `n` sample subscribers with ids 1..n, on e-mail; `domains` as in SampleFactory.
    SQLite takes one writer, so its parts load one after the other; PostgreSQL loads them in parallel
    processes with the secondary indexes built once at the end, as pg_restore does."""
    started = time.perf_counter()
    fresh_database(url)
    naive_utc = datetime.now(timezone.utc).replace(tzinfo=None)
    pg = not url.startswith("sqlite")
    indexes = [index for table, _ in TABLES for index in table.indexes]

    async def indexes_and_statistics(build: bool) -> None:
        db = bench_database(url)
        try:
            if pg:
                async with db.write() as conn:
                    for index in indexes:
                        await conn.run_sync(index.create if build else index.drop)
            if build:
                # Fresh statistics (and on PostgreSQL the visibility map, for index-only scans): what
                # autovacuum would give a real database shortly after a load.
                async with db.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(sa.text("VACUUM ANALYZE" if pg else "ANALYZE"))
        finally:
            await db.close()

    asyncio.run(indexes_and_statistics(build=False))
    if pg:
        with ProcessPoolExecutor(PARTS, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = sum(pool.map(_load_part, *zip(*[(url, p, n, domains, naive_utc) for p in range(PARTS)])))
    else:
        rows = sum(_load_part(url, p, n, domains, naive_utc) for p in range(PARTS))
    asyncio.run(indexes_and_statistics(build=True))
    return SeedResult(n, rows, time.perf_counter() - started)


def sqlite_url(directory: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{directory / name}"


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a fresh process, so that its peak RSS is its own and not the seeding's or
    another measurement's; `fn` must be importable (module level)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process and its live descendants have used so far
    (`pushsvc worker` runs its urgent lane in a child process)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):  # a child may end between the listing and the read
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def stop_processes(procs: list[subprocess.Popen[Any]]) -> None:
    """SIGTERM to all (workers finish what they are sending), then wait; kill what hangs."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

"""How fast a CSV of subscribers imports: 100,000 rows through the same code path as
`pushsvc subscribers import` and POST /v1/subscribers/import (validation, duplicate checks, chunked
writes), on SQLite and PostgreSQL. Competitor in the same run: one transaction per row (what an
import without chunking would do), on a sample, extrapolated."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.identifiers import uscc_check_char
from pushsvc.services import open_services
from pushsvc.settings import Settings
from pushsvc.store.migrate import upgrade
from pushsvc.subscriptions.importing import import_csv

DISTRICTS = ["yuexiu", "haizhu", "liwan", "tianhe", "baiyun", "huangpu", "panyu", "huadu", "nansha", "conghua", "zengcheng"]
HEADER = ("name,email,phone,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,"
          "enterprise.scale,taxpayer.district,taxpayer.taxpayer_type")


async def fresh_pg_database(url: str) -> None:
    """The bench's own database, dropped and created anew: never the tests' database."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    base, _, name = url.rpartition("/")
    engine = create_async_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await conn.execute(text(f"CREATE DATABASE {name}"))
    await engine.dispose()


def csv_text(n: int, offset: int = 0) -> str:
    lines = [HEADER]
    for i in range(offset, offset + n):
        body = f"91440101MA{i:07d}"
        d = DISTRICTS[i % 11]
        lines.append(f"企业{i},u{i}@example.com,1380{i:07d},employment-entrepreneurship;tax-administration,"
                     f"email,{body}{uscc_check_char(body)},{d},C,small,{d},small_scale")
    return "\n".join(lines)


async def run(url: str, rows: int, sample: int) -> None:
    if url.startswith("postgresql"):
        await fresh_pg_database(url)
    await asyncio.to_thread(upgrade, url)
    settings = Settings(database_url=url, admin_token="bench-admin-token-123", secret_key="b" * 40)  # type: ignore[call-arg]
    svc = await open_services(settings)
    try:
        data = csv_text(rows)
        start = time.perf_counter()
        report = await import_csv(svc, io.StringIO(data), source="bench", department_id=None,
                                  channel_contacts=CHANNEL_CONTACTS)
        chunked = time.perf_counter() - start
        assert report.imported == rows and not report.rejected, report.as_dict()["rejected"][:3]  # type: ignore[index]

        # One transaction per row: the same code path with chunks of one.
        from pushsvc.subscriptions import importing

        importing.CHUNK = 1
        start = time.perf_counter()
        await import_csv(svc, io.StringIO(csv_text(sample, offset=rows)), source="bench", department_id=None,
                         channel_contacts=CHANNEL_CONTACTS)
        per_row = (time.perf_counter() - start) / sample
        importing.CHUNK = 1000
    finally:
        await svc.close()
    backend = url.split(":")[0]
    print(f"{backend:<20} {rows:>8} rows in {chunked:6.1f} s = {rows / chunked:8.0f} rows/s | "
          f"row-per-transaction: {1 / per_row:6.0f} rows/s (sample {sample}) | ratio {rows / chunked * per_row:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--database-url", action="append",
                        help="default: a temp SQLite file and postgresql+asyncpg://postgres@127.0.0.1:5432/pushsvc_bench")
    args = parser.parse_args()
    urls = args.database_url or [
        f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/import.db",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/pushsvc_bench",
    ]
    print(f"cores: {os.cpu_count()}")
    for url in urls:
        asyncio.run(run(url, args.rows, args.sample))


if __name__ == "__main__":
    main()

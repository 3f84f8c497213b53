"""Issue 19, item 4: delivery receipts applied in bulk, on SQLite and PostgreSQL.

    python -m bench.receipts [--receipts N] [--batch B] [--per-row N] [--database-url URL ...] [--quick]

For each database: N ledger rows seeded `sent` with provider ids straight into the table (one
department with a callbacks receiver, so every row moved also writes its outbox event), then N
SMS receipts (nine in ten delivered, each naming its request and number as Aliyun's do) fed in
pushes of B through `pushsvc.delivery.receipts.record`, the function behind the gateways'
callback endpoints and the sweeper. Then the rows are put back to `sent` and the old path (rows
looked up, then one UPDATE per receipt by row id) runs in the same process over `--per-row`
receipts, for the comparison. Both runs are then repeated without the receiver (what the outbox
events cost). Checks that every row moved as its receipt said and that one event per row was
written. Target: at least 5,000 receipts/s on each database, receiver included; exits 1 below it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import DEFAULT_PG_URL, cpu_count, fresh_database, isolated, sqlite_url, use_bench_schema
from pushsvc.api.gateways import SmsReceipt
from pushsvc.core.clock import now
from pushsvc.core.figures import error_code
from pushsvc.delivery import receipts as delivery_receipts
from pushsvc.services import Services, open_services
from pushsvc.settings import Settings
from pushsvc.store.bulk import insert_rows
from pushsvc.store.callbacks import receipt_events
from pushsvc.store.schema import callback_events, callbacks, deliveries, departments, policies, subscribers

TARGET_PER_SECOND = 5_000
SECRET = "bench-secret-key-" + "0" * 32
REQUEST = 1_000  # numbers per SMS request: receipts name their request (out_id) and number


def message_id(i: int) -> str:
    return f"bench-{i:08d}"


def phone(i: int) -> str:
    return f"139{i:08d}"


def delivered(i: int) -> bool:
    return i % 10 != 0


async def seed_ledger(conn: Any, n: int, at: datetime, first: int = 1) -> int:
    """A department with a callbacks receiver, a policy and subscribers `first`..`first + n - 1`,
    each with one SMS ledger row `sent` under message_id(i); returns the policy id."""
    if first == 1:
        await conn.execute(sa.insert(departments).values(
            id=1, name="bench", domains=["healthcare"], api_key_hash="0" * 64, key_prefix="psk_bench",
            created_at=at))
        await conn.execute(sa.insert(callbacks).values(
            department_id=1, url="https://receiver.example/cb", bearer_token="sealed", updated_at=at))
        await conn.execute(sa.insert(policies).values(
            id=1, department_id=1, title="t", summary="s", body="b", domain="healthcare", disclosure="proactive",
            targeting={"audiences": ["enterprise"]}, channels=["sms"], status="published", created_at=at,
            updated_at=at))
    ids = range(first, first + n)
    await insert_rows(conn, subscribers, [
        {"id": i, "phone": phone(i), "status": "active", "supplied_by": "department", "department_id": 1,
         "created_at": at, "updated_at": at} for i in ids])
    await insert_rows(conn, deliveries, [
        {"id": i, "policy_id": 1, "notice": 0, "subscriber_id": i, "channel": "sms", "status": "sent",
         "attempts": 1, "provider_ref": message_id(i), "provider": "generic", "created_at": at,
         "updated_at": at, "sent_at": at} for i in ids])
    return 1


def receipts_for(ids: Sequence[int], at: datetime) -> list[SmsReceipt]:
    return [SmsReceipt(message_id=message_id(i), phone_number=phone(i), out_id=f"bench-req-{i // REQUEST}",
                       delivered=delivered(i), error_code=None if delivered(i) else "UNDELIV", reported_at=at)
            for i in ids]


# -- the old path, for the comparison ---------------------------------------------------------------


async def per_row(conn: Any, channel: str, receipts: Sequence[Any], at: datetime,
                  pending: Mapping[str, str] | None = None) -> list[str]:
    """apply_receipts as it was before issue 19: rows looked up by provider id, then one UPDATE per
    receipt by row id (executemany), `unknown` rows adopted one by one, events by provider id."""
    if pending:
        await conn.execute(
            sa.update(deliveries).where(deliveries.c.provider_ref == sa.bindparam("ref"),
                                        deliveries.c.channel == channel, deliveries.c.status == "unknown")
            .values(status="sent", provider_ref=sa.bindparam("mid"), sent_at=at, error=None, updated_at=at),
            [{"ref": ref, "mid": mid} for ref, mid in pending.items()])
    refs = sorted({r.message_id for r in receipts})
    ids: dict[str, list[int]] = {}
    for start in range(0, len(refs), 900):
        for ref, row_id in await conn.execute(sa.select(deliveries.c.provider_ref, deliveries.c.id).where(
                deliveries.c.provider_ref.in_(refs[start : start + 900]), deliveries.c.channel == channel)):
            ids.setdefault(ref, []).append(row_id)
    for ok in (True, False):
        rows = [{"did": row_id, "when": r.reported_at or at,
                 "why": None if ok else error_code(f"not delivered: {r.error_code or 'unknown'}")}
                for r in receipts if r.delivered is ok for row_id in ids.get(r.message_id, ())]
        if rows:
            values: dict[str, Any] = {"status": "delivered" if ok else "failed", "updated_at": at}
            values.update({"delivered_at": sa.bindparam("when")} if ok else {"error": sa.bindparam("why")})
            await conn.execute(sa.update(deliveries).where(deliveries.c.id == sa.bindparam("did"),
                                                           deliveries.c.status == "sent").values(**values), rows)
    await receipt_events(conn, channel, [r.message_id for r in receipts], at)
    return [ref for ref in refs if ref not in ids]


@contextmanager
def old_path() -> Iterator[None]:
    with mock.patch.object(delivery_receipts, "apply_receipts", per_row):
        yield


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class Measured:
    backend: str
    receipts: int
    seconds: float
    per_row_receipts: int
    per_row_seconds: float
    problems: list[str]
    # The same two runs for a department without a callbacks receiver (no outbox events to write).
    quiet_seconds: float = 0.0
    quiet_per_row_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.receipts / self.seconds

    @property
    def per_row_rate(self) -> float:
        return self.per_row_receipts / self.per_row_seconds if self.per_row_seconds else 0.0


async def _feed(svc: Services, receipts: list[SmsReceipt], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(receipts), batch):
        unknown = await delivery_receipts.record(svc, "sms", receipts[start : start + batch])
        assert not unknown, unknown[:5]
    return time.perf_counter() - started


async def _check(svc: Services, n: int) -> list[str]:
    """Every row moved as its receipt said, and one outbox event each."""
    async with svc.db.read() as conn:
        counts = dict((await conn.execute(
            sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status))).all())
        events = (await conn.execute(sa.select(sa.func.count()).select_from(callback_events))).scalar_one()
    failed = len([i for i in range(1, n + 1) if not delivered(i)])
    problems = []
    if counts != {"delivered": n - failed, "failed": failed}:
        problems.append(f"ledger statuses {counts}, expected {n - failed} delivered and {failed} failed")
    if events != n:
        problems.append(f"{events} callback events for {n} rows moved")
    return problems


async def _reset(svc: Services) -> None:
    async with svc.db.write() as conn:
        await conn.execute(sa.update(deliveries).values(status="sent", delivered_at=None, error=None))
        await conn.execute(sa.delete(callback_events))


async def measure(url: str, redis_url: str, n: int, batch: int, per_row_n: int) -> Measured:
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    settings = Settings(_env_file=None, database_url=url, redis_url=redis_url,  # type: ignore[call-arg]
                        admin_token="bench-admin-token-0123456789", secret_key=SECRET)
    svc = await open_services(settings)
    try:
        at = now()
        async with svc.db.write() as conn:
            await seed_ledger(conn, n, at)
        if backend == "PostgreSQL":
            async with svc.db.read() as conn:
                await conn.execute(sa.text("ANALYZE"))  # what autovacuum does soon after a load
        receipts = receipts_for(range(1, n + 1), at)
        seconds = await _feed(svc, receipts, batch)
        problems = await _check(svc, n)
        await _reset(svc)
        with old_path():
            old_seconds = await _feed(svc, receipts[:per_row_n], batch)
        async with svc.db.write() as conn:
            await conn.execute(sa.delete(callbacks))
        await _reset(svc)
        quiet_seconds = await _feed(svc, receipts, batch)
        await _reset(svc)
        with old_path():
            quiet_old_seconds = await _feed(svc, receipts[:per_row_n], batch)
    finally:
        await svc.close()
    return Measured(backend, n, seconds, per_row_n, old_seconds, problems, quiet_seconds, quiet_old_seconds)


def run_one(url: str, redis_url: str, n: int, batch: int, per_row_n: int) -> Measured:
    """One database, in a process of its own (bench.common.isolated): the bench schema's search path
    is set for every engine of the process that sets it."""
    if not url.startswith("sqlite"):
        use_bench_schema()
    fresh_database(url)  # runs its own event loop (Alembic's)
    return asyncio.run(measure(url, redis_url, n, batch, per_row_n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receipts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=100_000, help="ledger rows and receipts (default 100,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="receipts per push (default 1,000)")
    parser.add_argument("--per-row", type=int, default=10_000, help="receipts for the old path (default 10,000)")
    parser.add_argument("--database-url", action="append", dest="urls", metavar="URL",
                        help="repeatable; default: a temporary SQLite file and " + DEFAULT_PG_URL +
                        " (in schema pushsvc_bench, dropped and recreated)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="where receipts are counted")
    parser.add_argument("--quick", action="store_true", help="5,000 receipts, 1,000 for the old path")
    args = parser.parse_args(argv)
    n, per_row_n = (5_000, 1_000) if args.quick else (args.receipts, min(args.per_row, args.receipts))
    console = Console(width=None if sys.stdout.isatty() else 150)
    workdir = Path(tempfile.mkdtemp(prefix="pushsvc-bench-"))
    try:
        urls = args.urls or [sqlite_url(workdir, "receipts.db"), DEFAULT_PG_URL]
        results = [isolated(run_one, url, args.redis_url, n, args.batch, per_row_n) for url in urls]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"{n:,} SMS receipts in pushes of {args.batch:,}, {cpu_count()} CPU(s)")
    for column in ("backend", "bulk", "receipts/s", f"old per-row ({per_row_n:,})", "old receipts/s",
                   "bulk/old", "no receiver: bulk/s, old/s", f">= {TARGET_PER_SECOND:,}/s"):
        table.add_column(column, justify="right")
    for m in results:
        table.add_row(m.backend, f"{m.seconds:.2f} s", f"{m.rate:,.0f}", f"{m.per_row_seconds:.2f} s",
                      f"{m.per_row_rate:,.0f}", f"{m.rate / m.per_row_rate:.1f}x" if m.per_row_rate else "-",
                      f"{n / m.quiet_seconds:,.0f}, {per_row_n / m.quiet_per_row_seconds:,.0f}",
                      "[green]met[/]" if m.rate >= TARGET_PER_SECOND and not m.problems else "[red]missed[/]")
    console.print(table)
    for m in results:
        for problem in m.problems:
            console.print(f"[red]{m.backend}: {problem}[/]")
    return 0 if all(m.rate >= TARGET_PER_SECOND and not m.problems for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())

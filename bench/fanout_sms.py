"""Issue 4: an SMS fan-out through the stand-in gateway, against the gateway's raw limit.

    python -m bench.fanout_sms [--recipients 100000] [--workers 2] [--database-url URL]

Seeds N sample subscribers with phone numbers straight into a fresh database (bench.common), then
starts, as separate processes, the SMS stub (`pushsvc stub sms`), the API (`pushsvc serve`) and W
workers (`pushsvc worker`). Two timings in the same run:

- raw: the very requests the service will send (per fan-out batch of 1,000 subscribers, one per
  locale, the same text), signed and posted straight to the stub by a plain aiohttp client with
  as many requests in flight as the workers may have (workers × PUSHSVC_SMS_CONNECTIONS);
- pipeline: from POST /v1/policies until the stub has recorded every number (fan-out, ledger
  writes, deliver jobs, rendering, requests, outcomes written in bulk).

Target: pipeline rate at least 0.6 of the raw rate. PostgreSQL: give a URL to a database the
bench may own (its `pushsvc_bench` schema is recreated and made the database's search_path, so
the service processes find it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import redis as redis_sync
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.common import (
    BENCH_SCHEMA,
    bench_database,
    catalogue,
    cpu_count,
    cpu_seconds,
    seed,
    sqlite_url,
    stop_processes,
)
from bench.ledger_floor import ledger_floor
from pushsvc.channels.sms import MAX_NUMBERS, SEND_PATH, national_number, render_text, signed_headers
from pushsvc.core.messages import PolicyMessage
from pushsvc.core.rendering import Renderer
from pushsvc.dev.demo_data import HOME_DOMAIN
from pushsvc.settings import REPO_ROOT, Settings

TARGET_RATIO = 0.6
BATCH = 1000
# With a receipt delay up to this, the raw run's receipts (which match nothing) are let through
# before the pipeline starts; with a longer one they come after the measurement anyway.
DRAIN_MAX_SECONDS = 10.0
RECEIPTS_WAIT_SECONDS = 120.0
ADMIN = "bench-admin-token-0123456789"
SMS_SECRET = "bench-sms-secret-0123456789"
TITLE = "关于支持中小微企业稳岗扩岗的若干措施"
SUMMARY = "对吸纳就业的小微企业给予一次性稳岗补贴。"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phone(sid: int) -> str:
    return f"+86138{sid:08d}"


async def _prepare(url: str) -> list[tuple[int, str]]:
    """Every sample subscriber gets a phone, SMS as its channel and every domain; returns (id, locale)."""
    db = bench_database(url)
    try:
        async with db.write() as conn:
            digits = "lpad(CAST(id AS TEXT), 8, '0')" if not db.is_sqlite else "substr('00000000' || id, -8, 8)"
            await conn.execute(sa.text(f"UPDATE subscribers SET phone = '+86138' || {digits}"))
            for table, column, value in (("subscriber_domains", "domain", "*"), ("subscriber_channels", "channel", "sms")):
                await conn.execute(sa.text(f"DELETE FROM {table}"))
                await conn.execute(sa.text(f"INSERT INTO {table} (subscriber_id, {column}) SELECT id, '{value}' FROM subscribers"))
        async with db.write() as conn:
            # Statistics as they are now: left stale, PostgreSQL plans the deliver jobs' contact
            # lookup from the channel index ("sms" looked rare) and takes seconds per batch.
            await conn.execute(sa.text("ANALYZE"))
        async with db.read() as conn:
            rows = await conn.execute(sa.text("SELECT id, locale FROM subscribers ORDER BY id"))
            return [(int(i), str(loc)) for i, loc in rows]
    finally:
        await db.close()


def _own_postgres_database(url: str) -> None:
    """Make the bench schema the database's search_path, for the service's processes."""
    name = make_url(url).database

    async def run() -> None:
        db = bench_database(url)
        async with db.write() as conn:
            await conn.execute(sa.text(f'ALTER DATABASE "{name}" SET search_path = {BENCH_SCHEMA}'))
        await db.close()

    asyncio.run(run())


def policy(audiences: list[str]) -> dict[str, Any]:
    return {"title": TITLE, "summary": SUMMARY, "domain": HOME_DOMAIN, "produced_on": date.today().isoformat(),
            "targeting": {"audiences": audiences}, "channels": ["sms"]}


def raw_bodies(settings: Settings, subscribers: list[tuple[int, str]], department: str) -> list[bytes]:
    """The requests the service sends for these subscribers: per batch, one per locale."""
    renderer = Renderer(settings.templates_dir)
    short = f"{settings.public_url}/s/AbCdEfG"
    message = PolicyMessage(policy_id=1, kind="policy", version="1", title=TITLE, summary=SUMMARY,
                            department=department, domain=HOME_DOMAIN, doc_number=None, page_url=short,
                            short_url=short, source_url=None, interpretation_url=None, produced_on=None,
                            effective_on=None, expires_on=None)
    contents: dict[str, str] = {}
    bodies: list[bytes] = []
    for start in range(0, len(subscribers), BATCH):
        by_locale: dict[str, list[str]] = {}
        for sid, locale in subscribers[start : start + BATCH]:
            by_locale.setdefault(locale, []).append(national_number(phone(sid)))
        for locale, numbers in by_locale.items():
            if locale not in contents:
                contents[locale] = render_text(settings, renderer, message, locale).content
            for i in range(0, len(numbers), MAX_NUMBERS):
                bodies.append(json.dumps({
                    "sign_name": settings.sms_sign_name, "template_code": settings.sms_template_code,
                    "template_param": {"content": contents[locale], "url": short, "opt_out": settings.sms_opt_out},
                    "phone_numbers": numbers[i : i + MAX_NUMBERS],
                }, ensure_ascii=False, separators=(",", ":")).encode())
    return bodies


async def _wait_http(session: aiohttp.ClientSession, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(url) as resp:
                if resp.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up")
        await asyncio.sleep(0.1)


async def _stub_numbers(session: aiohttp.ClientSession, stub: str) -> dict[str, int]:
    async with session.get(f"{stub}/_stub/stats") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def _until_recorded(session: aiohttp.ClientSession, stub: str, n: int, started: float, timeout: float) -> float:
    while True:
        stats = await _stub_numbers(session, stub)
        if stats["numbers"] >= n:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"only {stats['numbers']:,} of {n:,} numbers reached the stub in {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def measure(api: str, stub: str, settings: Settings, subscribers: list[tuple[int, str]],
                  in_flight: int, audiences: list[str], drain_receipts: bool, url: str,
                  procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    n = len(subscribers)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await _wait_http(session, f"{api}/healthz")
        await _wait_http(session, f"{stub}/_stub/stats")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with session.post(f"{api}/v1/departments", headers=admin,
                                json={"name": "市人社局", "domains": [HOME_DOMAIN]}) as resp:
            key = (await resp.json())["api_key"]

        # Raw: the same requests, posted straight to the stub.
        bodies = raw_bodies(settings, subscribers, "市人社局")
        queue = iter(bodies)

        async def lane() -> None:
            for body in queue:
                async with session.post(stub + SEND_PATH, data=body,
                                        headers=signed_headers(settings.sms_secret, body)) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        raw_seconds = await _until_recorded(session, stub, n, started, 600)
        # Let the raw run's receipts drain, then start clean.
        while (await _stub_numbers(session, stub))["receipts_posted"] < n and drain_receipts:
            await asyncio.sleep(0.2)
        async with session.delete(f"{stub}/_stub/messages"):
            pass

        # Pipeline: publish, then wait for the stub to have every number.
        started = time.perf_counter()
        cpu_before = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
        async with session.post(f"{api}/v1/policies", headers={"Authorization": f"Bearer {key}"},
                                json=policy(audiences)) as resp:
            assert resp.status == 202, await resp.text()
            policy_id = (await resp.json())["id"]
        pipeline_seconds = await _until_recorded(session, stub, n, started, 900)
        cpu = {name: cpu_seconds(proc.pid) - cpu_before[name] for name, proc in procs.items()}
        stats = await _stub_numbers(session, stub)
        # The floor needs the database to itself: let the pipeline's receipts land first (a stub
        # told to wait long holds them back anyway; an API refusing them is said below).
        deadline = time.monotonic() + RECEIPTS_WAIT_SECONDS
        while drain_receipts and (posted := (await _stub_numbers(session, stub))["receipts_posted"]) < n:
            if time.monotonic() > deadline:
                print(f"  only {posted:,} of {n:,} receipts taken after {RECEIPTS_WAIT_SECONDS:.0f} s: "
                      "the floor shares the database with the rest", flush=True)
                break
            await asyncio.sleep(0.2)
    # The services are idle now: the database is the floor's alone.
    floor_seconds = await ledger_floor(url, policy_id, [sid for sid, _ in subscribers], BATCH)
    return {"raw_seconds": raw_seconds, "raw_requests": len(bodies), "pipeline_seconds": pipeline_seconds,
            "pipeline_requests": stats["requests"], "numbers": stats["numbers"], "cpu": cpu,
            "floor_seconds": floor_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temporary folder")
    parser.add_argument("--receipt-delay", type=float, default=1.0,
                        help="seconds before the stub posts receipts (they compete for the database)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="a Redis database the bench may flush")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    url = args.database_url or sqlite_url(tmp, "bench.db")
    print(f"seeding {args.recipients:,} subscribers into {url.split('@')[-1]} ...", flush=True)
    seeded = seed(url, args.recipients)
    if not url.startswith("sqlite"):
        _own_postgres_database(url)
    subscribers = asyncio.run(_prepare(url))
    print(f"  {seeded.rows:,} rows in {seeded.seconds:.1f} s", flush=True)

    api_port, stub_port = free_port(), free_port()
    api, stub = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{stub_port}"
    os.environ.update({"PUSHSVC_DATABASE_URL": url, "PUSHSVC_REDIS_URL": args.redis_url,
                       "PUSHSVC_ADMIN_TOKEN": ADMIN, "PUSHSVC_SECRET_KEY": "bench-secret-key-" + "0" * 32,
                       "PUSHSVC_PUBLIC_URL": api, "PUSHSVC_SMS_URL": stub, "PUSHSVC_SMS_SECRET": SMS_SECRET,
                       "PUSHSVC_QUIET_HOURS": "00:00-00:00", "PUSHSVC_FANOUT_BATCH_SIZE": str(BATCH)})
    settings, env = Settings(_env_file=None), dict(os.environ)  # type: ignore[call-arg]
    redis_sync.Redis.from_url(args.redis_url).flushdb()
    cli = [sys.executable, "-m", "pushsvc.cli"]
    logs = open(tmp / "services.log", "wb")
    procs = {
        "stub": subprocess.Popen(cli + ["stub", "sms", "--port", str(stub_port), "--receipt-delay",
                                        str(args.receipt_delay)], env=env, cwd=REPO_ROOT, stdout=logs,
                                 stderr=subprocess.STDOUT),
        "api": subprocess.Popen(cli + ["serve", "--port", str(api_port)], env=env, cwd=REPO_ROOT, stdout=logs,
                                stderr=subprocess.STDOUT),
    } | {f"worker {i + 1}": subprocess.Popen(cli + ["worker"], env=env, cwd=REPO_ROOT, stdout=logs,
                                             stderr=subprocess.STDOUT)
         for i in range(args.workers)}
    in_flight = args.workers * settings.sms_connections
    try:
        result = asyncio.run(measure(api, stub, settings, subscribers, in_flight, list(catalogue().groups),
                                     args.receipt_delay <= DRAIN_MAX_SECONDS, url, procs))
    finally:
        stop_processes(list(procs.values()))
        logs.close()

    n = args.recipients
    raw_rate, rate = n / result["raw_seconds"], n / result["pipeline_seconds"]
    ratio = rate / raw_rate
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    print(f"nproc {cpu_count()}, {backend}, {args.workers} workers, {n:,} recipients")
    print(f"raw:      {result['raw_requests']} requests, {in_flight} in flight: "
          f"{result['raw_seconds']:.2f} s, {raw_rate:,.0f} numbers/s")
    print(f"pipeline: {result['pipeline_requests']} requests: {result['pipeline_seconds']:.2f} s, {rate:,.0f} numbers/s")
    print("  CPU seconds meanwhile: " + ", ".join(f"{name} {sec:.1f}" for name, sec in result["cpu"].items())
          + ("" if url.startswith("sqlite") else " (PostgreSQL's own processes not counted)"))
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO}) {'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")
    floor = result["floor_seconds"]
    print(f"ledger floor: {n:,} rows inserted, claimed and given outcomes by the plain driver, no HTTP: "
          f"{floor:.2f} s; the best ratio a per-recipient ledger allows here is raw/floor = "
          f"{min(1.0, result['raw_seconds'] / floor):.2f}")
    print(f"logs: {tmp / 'services.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

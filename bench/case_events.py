"""Issue 6: case events accepted by the API, and the time from event to message at the SMS gateway.

    python -m bench.case_events [--cases 1000] [--concurrency 48] [--workers 2] [--database-url URL]

Starts, as separate processes, the SMS stub (`pushsvc stub sms`), the API (`pushsvc serve`) and W
workers (`pushsvc worker`) on a fresh database; opens N cases (not timed), then posts every case's
journey (accepted → in_review → approved → completed → result_delivered) with C requests in
flight, each case's steps in order and the cases interleaved. Reported:

- accepted: events answered 202 per second while posting;
- event → message: from sending an event to the stub recording its SMS (the stub's clock and ours
  are the same machine's), median and 99th percentile, and how long the workers needed after the
  last event to send everything (keeping up: a few seconds at most).

Target: at least 500 events/s accepted with p99 event → message under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import redis as redis_sync

from bench.common import cpu_count, fresh_database, sqlite_url, stop_processes
from bench.fanout_sms import _own_postgres_database, _wait_http, free_port
from pushsvc.cases.messages import status_labels
from pushsvc.settings import REPO_ROOT

ADMIN = "bench-admin-token-0123456789"
SMS_SECRET = "bench-sms-secret-0123456789"
JOURNEY = ("accepted", "in_review", "approved", "completed", "result_delivered")
TARGET_RATE, TARGET_P99 = 500.0, 2.0


def phone(i: int) -> str:
    return f"+86139{i:08d}"


async def _stub_count(session: aiohttp.ClientSession, stub: str) -> int:
    async with session.get(f"{stub}/_stub/stats") as resp:
        return int((await resp.json())["numbers"])


async def measure(api: str, stub: str, n: int, concurrency: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await _wait_http(session, f"{api}/healthz")
        await _wait_http(session, f"{stub}/_stub/stats")
        async with session.post(f"{api}/v1/departments", headers={"Authorization": f"Bearer {ADMIN}"},
                                json={"name": "市政务服务数据管理局", "domains": ["municipal-services"]}) as resp:
            key = (await resp.json())["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        gate = asyncio.Semaphore(concurrency)

        async def open_case(i: int) -> None:
            async with gate, session.post(f"{api}/v1/cases", headers=auth, json={
                "case_no": f"B{i:06d}", "service_item": "个体工商户设立登记",
                "applicant": {"name": "张小三", "phone": phone(i)}}) as resp:
                assert resp.status == 201, await resp.text()

        await asyncio.gather(*(open_case(i) for i in range(n)))
        sent_at: dict[tuple[str, str], float] = {}

        async def journey(i: int) -> None:
            for k, status in enumerate(JOURNEY):
                body = {"event_id": f"{i}-{k}", "status": status,
                        "occurred_at": datetime.now(timezone.utc).isoformat()}
                async with gate:
                    sent_at[(phone(i)[3:], status)] = time.time()
                    async with session.post(f"{api}/v1/cases/B{i:06d}/events", headers=auth, json=body) as resp:
                        assert resp.status == 202, await resp.text()

        started = time.perf_counter()
        await asyncio.gather(*(journey(i) for i in range(n)))
        posting = time.perf_counter() - started
        total = n * len(JOURNEY)
        while (await _stub_count(session, stub)) < total:
            if time.perf_counter() - started > posting + 60:
                raise SystemExit(f"only {await _stub_count(session, stub):,} of {total:,} messages reached the stub "
                                 f"({total / posting:,.0f} events/s accepted)")
            await asyncio.sleep(0.05)
        drained = time.perf_counter() - started - posting
        async with session.get(f"{stub}/_stub/messages") as resp:
            messages = await resp.json()
    words = {status_labels(s)["zh-CN"]: s for s in JOURNEY}
    latencies = []
    for m in messages:
        label = next(w for w in sorted(words, key=len, reverse=True) if w in m["text"])
        received = datetime.fromisoformat(m["received_at"]).timestamp()
        latencies.append(received - sent_at[(m["numbers"][0], words[label])])
    latencies.sort()
    return {"events": total, "posting": posting, "drained": drained, "messages": len(messages),
            "median": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=48, help="API requests in flight")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-jobs", type=int, default=32, help="PUSHSVC_WORKER_MAX_JOBS of each worker")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temporary folder")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="a Redis database the bench may flush")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-cases-"))
    url = args.database_url or sqlite_url(tmp, "bench.db")
    fresh_database(url)
    if not url.startswith("sqlite"):
        _own_postgres_database(url)
    api_port, stub_port = free_port(), free_port()
    api, stub = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{stub_port}"
    env = {**os.environ, "PUSHSVC_DATABASE_URL": url, "PUSHSVC_REDIS_URL": args.redis_url,
           "PUSHSVC_ADMIN_TOKEN": ADMIN, "PUSHSVC_SECRET_KEY": "bench-secret-key-" + "0" * 32,
           "PUSHSVC_PUBLIC_URL": api, "PUSHSVC_SMS_URL": stub, "PUSHSVC_SMS_SECRET": SMS_SECRET,
           "PUSHSVC_WORKER_MAX_JOBS": str(args.max_jobs),
           # What is measured is the service's capacity, not the ceiling an operator sets per key.
           "PUSHSVC_API_REQUESTS_PER_MINUTE": "0"}
    redis_sync.Redis.from_url(args.redis_url).flushdb()
    cli = [sys.executable, "-m", "pushsvc.cli"]
    logs = open(tmp / "services.log", "wb")

    def start(*command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(cli + list(command), env=env, cwd=REPO_ROOT, stdout=logs, stderr=subprocess.STDOUT)

    # Receipts after the run: cases' receipts are not read, they would only add load.
    procs = [start("stub", "sms", "--port", str(stub_port), "--receipt-delay", "600"),
             start("serve", "--port", str(api_port))] + [start("worker") for _ in range(args.workers)]
    try:
        result = asyncio.run(measure(api, stub, args.cases, args.concurrency))
    finally:
        stop_processes(procs)
        logs.close()

    rate = result["events"] / result["posting"]
    backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    ok = rate >= TARGET_RATE and result["p99"] < TARGET_P99
    print(f"nproc {cpu_count()}, {backend}, {args.workers} workers × {args.max_jobs} jobs, {args.cases:,} cases, "
          f"{args.concurrency} requests in flight")
    print(f"accepted: {result['events']:,} events in {result['posting']:.2f} s = {rate:,.0f} events/s "
          f"(target >= {TARGET_RATE:.0f})")
    print(f"event → message: median {result['median'] * 1000:,.0f} ms, p99 {result['p99'] * 1000:,.0f} ms "
          f"(target < {TARGET_P99 * 1000:,.0f} ms); {result['messages']:,} messages, all sent "
          f"{result['drained']:.2f} s after the last event")
    print("OK" if ok else "BELOW TARGET")
    print(f"logs: {tmp / 'services.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

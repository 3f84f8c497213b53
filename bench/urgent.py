"""Issue 17: the urgent lane. An urgent policy published while a big e-mail fan-out runs reaches its
last recipient within 10 s, and the big fan-out still completes.

    python -m bench.urgent [--quick] [--database sqlite|postgresql] [--runs 5]

1. Seeds BIG + SMALL sample subscribers (bench.common.seed), all on e-mail: the first BIG subscribe
   to the big policy's domain, the last SMALL (addresses @urgent.example.com) to the urgent one's.
2. Starts an SMTP sink (pushsvc's SmtpSink) in a process of its own, the API in this process and one
   `pushsvc worker` process (which serves the default queue and the urgent lane), pinned as
   bench.fanout_email pins them.
3. Publishes the big policy to BIG recipients; once a tenth of them have their mail, publishes
   an urgent policy to the SMALL recipients, `--runs` times one after the other, each timed from
   the publish request until the sink has the last of its SMALL messages.
4. For comparison, the same SMALL recipients get the same policy as a normal one, behind what is
   left of the big fan-out.
5. Waits for the big fan-out to end: every row `sent`, none failed.
Targets: urgent p95 (nearest rank) < 10 s; the big fan-out completes. Exits 1 on a miss.
`--quick`: 10,000 + 200 (a test runs it). PostgreSQL gets a database of its own on --pg-url.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import redis
import sqlalchemy as sa
from aiohttp import web
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import DEFAULT_PG_URL, bench_database, catalogue, isolated, seed, sqlite_url
from bench.fanout_email import (
    HOST,
    SINK_CPU,
    bench_env,
    final_counts,
    pinning,
    start_process,
    stop_process,
    wait_for_line,
)
from bench.fanout_sms import _own_postgres_database
from pushsvc.app import build_app
from pushsvc.dev.demo_data import HOME_DOMAIN, demo_policy
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.services import open_services
from pushsvc.settings import REPO_ROOT, load_settings

# Its own database: 1-11 are the test sessions', 12 the demo test's and bench.faults', 14 the demo's.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
PG_DATABASE = "pushsvc_urgent"
URGENT_DOMAIN = "disaster-relief"
URGENT_SUFFIX = "@urgent.example.com"
TARGET_SECONDS = 10.0
SIZES = {False: (100_000, 1_000), True: (10_000, 200)}  # --quick: (big, small)
# The urgent runs start once this share of the big fan-out has reached the sink: it is under way.
UNDER_WAY = 0.1
WAIT_TIMEOUT = 1800.0  # the normal policy waits for the whole big fan-out: minutes on a busy machine


# --- the sink, in a process of its own -------------------------------------------------------------
def sink_app(sink: SmtpSink) -> web.Application:
    async def arrivals(request: web.Request) -> web.Response:
        """Messages from number `after` on: how many there are in all, and when each of those to an
        address ending in `suffix` arrived (epoch seconds; with `count`, only how many)."""
        after, suffix = int(request.query.get("after", 0)), request.query.get("suffix", URGENT_SUFFIX)
        messages = sink.messages()
        times = [m.received_at.timestamp() for m in messages[after:] if any(to.endswith(suffix) for to in m.rcpt_tos)]
        if "count" in request.query:
            return web.json_response({"total": len(messages), "count": len(times)})
        return web.json_response({"total": len(messages), "times": times})

    app = web.Application()
    app.router.add_get("/arrivals", arrivals)
    return app


async def serve_sink() -> None:
    sink = SmtpSink(HOST, 0, maildir=None)
    await asyncio.to_thread(sink.start)
    runner = web.AppRunner(sink_app(sink), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    print(f"READY {sink.port} {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(sink.stop)


class Sink:
    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "bench.urgent", "--sink"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, {SINK_CPU})) if pinning() else None)
        assert self.proc.stdout is not None
        ready, smtp_port, http_port = self.proc.stdout.readline().split()
        assert ready == "READY"
        self.smtp_port = int(smtp_port)
        self.url = f"http://{HOST}:{http_port}"

    async def arrivals(self, http: aiohttp.ClientSession, after: int = 0, suffix: str = URGENT_SUFFIX,
                       count: bool = False) -> dict[str, Any]:
        params = {"after": str(after), "suffix": suffix} | ({"count": "1"} if count else {})
        async with http.get(f"{self.url}/arrivals", params=params) as resp:
            return await resp.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- the runs --------------------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    seconds: float
    first: float  # seconds to the first recipient's mail: the fan-out's share of `seconds`, about
    big_running: bool  # whether the big fan-out had not finished when this policy was published


def policy(title: str, domain: str, priority: str) -> dict[str, Any]:
    return {**demo_policy(date.today()), "title": title, "domain": domain, "priority": priority,
            "targeting": {"audiences": sorted(catalogue().groups)}}  # everyone subscribed to the domain


class Driver:
    def __init__(self, http: aiohttp.ClientSession, sink: Sink, base: str, key: str, big: int, small: int) -> None:
        self.http, self.sink, self.base, self.big, self.small = http, sink, base, big, small
        self.headers = {"Authorization": f"Bearer {key}"}

    async def publish(self, body: dict[str, Any]) -> int:
        async with self.http.post(f"{self.base}/v1/policies", headers=self.headers, json=body) as resp:
            assert resp.status == 202, await resp.text()
            return int((await resp.json())["id"])

    async def big_sent(self) -> int:
        """The big policy's messages at the sink (the sample addresses are @example.com)."""
        return int((await self.sink.arrivals(self.http, suffix="@example.com", count=True))["count"])

    async def timed(self, name: str, body: dict[str, Any]) -> Run:
        """From just before the publish until the sink has the SMALL recipients' messages."""
        cursor = int((await self.sink.arrivals(self.http, count=True))["total"])
        big_running = await self.big_sent() < self.big
        started = time.time()
        await self.publish(body)
        times: list[float] = []
        deadline = time.monotonic() + WAIT_TIMEOUT
        while len(times) < self.small:
            got = await self.sink.arrivals(self.http, cursor)
            times += got["times"]
            cursor = got["total"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {len(times)} of {self.small} messages at the sink")
            await asyncio.sleep(0.05)
        return Run(name, max(times) - started, min(times) - started, big_running)


async def measure(args: argparse.Namespace, database_url: str, workdir: Path, console: Console) -> tuple[list[Run], dict[str, int], int]:
    big, small = SIZES[args.quick]
    redis.Redis.from_url(args.redis_url).flushdb()
    sink = Sink()
    api_socket = socket.create_server((HOST, 0))
    env = bench_env(database_url, args.redis_url, api_socket.getsockname()[1], sink.smtp_port,
                    load_settings(admin_token="x" * 16, secret_key="x" * 32).smtp_connections)
    settings = load_settings(**{k.removeprefix("PUSHSVC_").lower(): v for k, v in env.items() if k.startswith("PUSHSVC_")})
    svc = await open_services(settings)
    runner = web.AppRunner(build_app(settings, svc), access_log=None)
    await runner.setup()
    await web.SockSite(runner, api_socket).start()
    log = workdir / "worker.log"
    worker = start_process(["-m", "pushsvc.cli", "worker"], env, log)
    try:
        if pinning():
            os.sched_setaffinity(0, {SINK_CPU})  # this driver mostly waits; keep it off the worker's CPU
        await wait_for_line(log, "Starting worker", worker)
        async with aiohttp.ClientSession() as http:
            admin = {"Authorization": f"Bearer {settings.admin_token}"}
            async with http.post(f"{settings.public_url}/v1/departments", headers=admin,
                                 json={"name": "bench", "domains": [HOME_DOMAIN, URGENT_DOMAIN]}) as resp:
                department = await resp.json()
            async with http.put(f"{settings.public_url}/v1/departments/{department['id']}/urgent", headers=admin,
                                json={"may_send_urgent": True}) as resp:
                assert resp.status == 200, await resp.text()
            driver = Driver(http, sink, settings.public_url, department["api_key"], big, small)
            console.print(f"big fan-out: {big:,} recipients ...")
            big_id = await driver.publish(policy("大规模推送", HOME_DOMAIN, "normal"))
            while await driver.big_sent() < big * UNDER_WAY:
                await asyncio.sleep(0.1)
            runs = []
            for i in range(args.runs):
                runs.append(await driver.timed(f"urgent {i + 1}", policy(f"紧急通知{i + 1}", URGENT_DOMAIN, "urgent")))
                console.print(f"  {runs[-1].name}: {runs[-1].first:.2f} s to the first, {runs[-1].seconds:.2f} s to the last")
            runs.append(await driver.timed("normal, behind it", policy("普通通知", URGENT_DOMAIN, "normal")))
            console.print(f"  {runs[-1].name}: {runs[-1].seconds:.2f} s")
            counts = await final_counts(http, settings.public_url, driver.headers, big_id)
            return runs, counts, big
    finally:
        stop_process(worker)
        await runner.cleanup()
        await svc.close()
        sink.stop()
        api_socket.close()


async def split_subscribers(url: str, big: int) -> None:
    """The first `big` subscribe to the big policy's domain; the rest, with addresses the sink tells
    apart, to the urgent one's."""
    db = bench_database(url)
    try:
        async with db.write() as conn:
            await conn.execute(sa.text("DELETE FROM subscriber_domains"))
            await conn.execute(sa.text(
                "INSERT INTO subscriber_domains (subscriber_id, domain) SELECT id, CASE WHEN id <= :big "
                "THEN :home ELSE :urgent END FROM subscribers"), {"big": big, "home": HOME_DOMAIN, "urgent": URGENT_DOMAIN})
            await conn.execute(sa.text("UPDATE subscribers SET email = 'u' || CAST(id AS TEXT) || :suffix WHERE id > :big"),
                               {"suffix": URGENT_SUFFIX, "big": big})
            await conn.execute(sa.text("UPDATE subscribers SET frequency = 'immediate'"))
        async with db.write() as conn:
            await conn.execute(sa.text("ANALYZE"))
    finally:
        await db.close()


def database(backend: str, workdir: Path, pg_url: str) -> str:
    """A SQLite file in `workdir`, or a database of the bench's own on the PostgreSQL server."""
    if backend == "sqlite":
        return sqlite_url(workdir, "urgent.db")

    async def recreate() -> None:
        engine = create_async_engine(pg_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
            await conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
        await engine.dispose()

    asyncio.run(recreate())
    return make_url(pg_url).set(database=PG_DATABASE).render_as_string(hide_password=False)


def p95(values: list[float]) -> float:
    """Nearest rank: with 5 runs, the slowest."""
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def report(console: Console, backend: str, runs: list[Run], counts: dict[str, int], big: int) -> bool:
    table = Table(title=f"urgent lane, {backend}: {big:,}-recipient fan-out running")
    for column in ("run", "seconds to the first recipient", "to the last", "big fan-out still running"):
        table.add_column(column, justify="right")
    for run in runs:
        table.add_row(run.name, f"{run.first:.2f}", f"{run.seconds:.2f}", "yes" if run.big_running else "no")
    console.print(table)
    urgent = [r.seconds for r in runs if r.name.startswith("urgent")]
    worst = p95(urgent)
    complete = counts["sent"] + counts.get("delivered", 0) == big and counts["failed"] == 0
    console.print(f"{backend}: urgent p95 {worst:.2f} s (target < {TARGET_SECONDS:.0f} s); normal behind it "
                  f"{runs[-1].seconds:.2f} s")
    console.print(f"{backend}: the big fan-out: " + ("every row sent" if complete else
                  f"NOT complete: {counts['sent']:,} sent, {counts['failed']:,} failed of {big:,}"))
    return worst < TARGET_SECONDS and complete


def run_backend(args: argparse.Namespace, backend: str, console: Console) -> bool:
    big, small = SIZES[args.quick]
    workdir = Path(tempfile.mkdtemp(prefix="pushsvc-urgent-"))
    try:
        url = database(backend, workdir, args.pg_url)
        console.print(f"{backend}: seeding {big + small:,} subscribers ...")
        isolated(seed, url, big + small, ("*",))
        asyncio.run(split_subscribers(url, big))
        if backend == "postgresql":
            _own_postgres_database(url)
        runs, counts, big = asyncio.run(measure(args, url, workdir, console))
        return report(console, backend, runs, counts, big)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.urgent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 + 200 recipients")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--runs", type=int, default=5, help="urgent policies, one after the other (default 5)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server (the bench makes its own database)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"flushed first (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        asyncio.run(serve_sink())
        return 0
    console = Console(width=None if sys.stdout.isatty() else 130)
    backends = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = [run_backend(args, backend, console) for backend in backends]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
